"""promtool and amtool: from PATH (Debian's packages), else the official images via Docker."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .render import ALERTMANAGER_FILE, PROMETHEUSRULE_FILE, RULES_FILE, TESTS_FILE

IMAGES = {"promtool": ("prom/prometheus", "promtool"), "amtool": ("prom/alertmanager", "amtool")}
INSTALL_HINT = (
    "install them with `apt-get install prometheus prometheus-alertmanager` (Debian/Ubuntu: "
    "promtool and amtool land in /usr/bin), or download the release tarballs from "
    "https://prometheus.io/download/, or start a Docker engine so that the official images "
    "prom/prometheus and prom/alertmanager can be used"
)


class ToolMissing(Exception):
    pass


@dataclass
class Step:
    name: str
    argv: list[str]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def docker_answers() -> bool:
    """True when a Docker engine actually answers (a docker CLI alone is not enough)."""
    docker = shutil.which("docker")
    if not docker:
        return False
    try:
        return subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def tool(name: str, workdir: Path, use_docker: bool | None = None) -> list[str]:
    """argv prefix that runs ``name`` with ``workdir`` as the current directory."""
    path = shutil.which(name)
    if path:
        return [path]
    if use_docker is None:
        use_docker = docker_answers()
    if use_docker:
        image, entry = IMAGES[name]
        return ["docker", "run", "--rm", "-v", f"{workdir.resolve()}:/work:ro", "-w", "/work",
                "--entrypoint", entry, image]
    raise ToolMissing(f"{name} not found on PATH and no Docker engine answers: {INSTALL_HINT}")


def version(name: str) -> str | None:
    path = shutil.which(name)
    if not path:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else None


def _run(name: str, argv: list[str], cwd: Path) -> Step:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "NO_COLOR": "1"})
    except subprocess.TimeoutExpired:
        return Step(name, argv, 124, "timed out after 600s")
    return Step(name, argv, proc.returncode, (proc.stdout + proc.stderr).strip())


def check(directory: str | Path) -> list[Step]:
    """promtool check rules, promtool test rules and amtool check-config over a render."""
    d = Path(directory)
    missing = [f for f in (RULES_FILE, TESTS_FILE, ALERTMANAGER_FILE) if not (d / f).is_file()]
    if missing:
        return [Step("files", [], 1, f"{d}: missing {', '.join(missing)} (run `rules render` first)")]
    steps: list[Step] = []
    try:
        promtool = tool("promtool", d)
    except ToolMissing as err:
        steps.append(Step("promtool", [], 127, str(err)))
        promtool = None
    if promtool:
        steps.append(_run("promtool check rules", [*promtool, "check", "rules", RULES_FILE], d))
        if (d / PROMETHEUSRULE_FILE).is_file():
            steps.append(_check_prometheusrule(promtool, d))
        steps.append(_run("promtool test rules", [*promtool, "test", "rules", TESTS_FILE], d))
    try:
        amtool = tool("amtool", d)
    except ToolMissing as err:
        steps.append(Step("amtool", [], 127, str(err)))
        amtool = None
    if amtool:
        steps.append(_run("amtool check-config", [*amtool, "check-config", ALERTMANAGER_FILE], d))
    return steps


def _check_prometheusrule(promtool: list[str], d: Path) -> Step:
    """promtool reads plain rule files only: check the resource's spec.groups as one."""
    name = f"promtool check rules ({PROMETHEUSRULE_FILE} spec)"
    try:
        doc = yaml.safe_load((d / PROMETHEUSRULE_FILE).read_text())
        groups = doc["spec"]["groups"]
        assert doc["kind"] == "PrometheusRule" and doc["apiVersion"] == "monitoring.coreos.com/v1"
    except (yaml.YAMLError, KeyError, TypeError, AssertionError) as err:
        return Step(name, [], 1, f"{PROMETHEUSRULE_FILE}: not a PrometheusRule resource: {err!r}")
    with tempfile.TemporaryDirectory(prefix="canary-guard-prule-", dir=d) as tmp:
        path = Path(tmp) / "spec.rules.yml"
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        return _run(name, [*promtool, "check", "rules", str(path.relative_to(d))], d)
