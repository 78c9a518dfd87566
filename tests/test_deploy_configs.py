"""deploy/: the generated files are fresh, the plain Prometheus and Alertmanager configs pass
promtool and amtool, the Grafana files are the dashboard render, and the Dockerfile builds
every component into one non-root image."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import need_binary

from canary_guard.plan import load_plan

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RENDER = [sys.executable, str(DEPLOY / "render.py")]


def test_generated_files_match_a_fresh_render_of_the_plan():
    result = subprocess.run([*RENDER, "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_check_names_a_stale_file(tmp_path):
    out = tmp_path / "deploy"
    assert subprocess.run([*RENDER, "--out", str(out)], capture_output=True).returncode == 0
    assert subprocess.run([*RENDER, "--check", "--out", str(out)], capture_output=True).returncode == 0
    rule = out / "kubernetes" / "base" / "prometheusrule.yaml"
    rule.write_text(rule.read_text().replace("CanaryErrorRateHigh", "Renamed"))
    (out / "alertmanager" / "alertmanager.yml").unlink()
    result = subprocess.run([*RENDER, "--check", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "stale: deploy/kubernetes/base/prometheusrule.yaml" in result.stderr
    assert "stale: deploy/alertmanager/alertmanager.yml" in result.stderr


def test_render_follows_another_plan(tmp_path):
    data = yaml.safe_load(load_plan().to_yaml())
    data["prometheus"]["job"] = "my-canary"
    data["prometheus"]["scrape_interval"] = 30
    data["actions"]["rollback"]["deployment"] = "checkout"
    data["actions"]["rollback"]["namespace"] = "shop"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    out = tmp_path / "deploy"
    result = subprocess.run([*RENDER, "--plan", str(plan), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    prom = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["job_name"] == "my-canary"
    assert prom["global"]["scrape_interval"] == "30s"
    role, _binding = yaml.safe_load_all((out / "kubernetes" / "base" / "rbac.yaml").read_text())
    assert role["metadata"]["namespace"] == "shop"
    assert role["rules"][0]["resourceNames"] == ["checkout"]
    assert 'up{job="my-canary"}' in (out / "prometheus" / "canary-guard.rules.yml").read_text()


def test_plain_prometheus_scrapes_the_service_per_track(tmp_path):
    """Outside Kubernetes the service's own /metrics are one static target per track, labelled
    with the track (the PodMonitor copies it from a pod label instead)."""
    plan = load_plan()
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == plan.traffic.job)
    assert job["honor_labels"] is True
    assert job["static_configs"] == [{"targets": ["localhost:8000"], "labels": {"track": "canary"}},
                                     {"targets": ["localhost:8001"], "labels": {"track": "stable"}}]
    data = yaml.safe_load(plan.to_yaml())
    del data["traffic"]
    data["triggers"] = [t for t in data["triggers"] if t.get("source") != "traffic"]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "deploy"
    assert subprocess.run([*RENDER, "--plan", str(path), "--out", str(out)]).returncode == 0
    prom = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    assert [j["job_name"] for j in prom["scrape_configs"]] == [plan.prometheus.job, "canary-guard-webhook"]
    assert "no traffic section" in (out / "kubernetes" / "base" / "traffic-podmonitor.yaml").read_text()


def test_prometheus_config_passes_promtool(tmp_path):
    promtool = need_binary("promtool")
    result = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    assert "canary-guard.rules.yml" in result.stdout + result.stderr  # the rule file was checked too


def test_prometheus_config_scrapes_both_components_and_alerts():
    plan = load_plan()
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs[plan.prometheus.job]["static_configs"][0]["targets"] == ["canary-guard-exporter:9111"]
    assert jobs["canary-guard-webhook"]["static_configs"][0]["targets"] == ["canary-guard-webhook:9112"]
    assert config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == ["canary-guard.rules.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]


def test_alertmanager_config_passes_amtool():
    amtool = need_binary("amtool")
    path = DEPLOY / "alertmanager" / "alertmanager.yml"
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u == load_plan().alertmanager.webhook_url for u in urls)


def test_grafana_files_are_the_dashboard_render():
    grafana = DEPLOY / "grafana"
    for rel in ("canary-guard-dashboard.json", "provisioning/datasources/canary-guard.yaml",
                "provisioning/dashboards/canary-guard.yaml"):
        assert (grafana / rel).is_file(), rel


# -- the runbook -------------------------------------------------------------------------------

def runbook_anchors() -> set[str]:
    text = (ROOT / "docs" / "runbook.md").read_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for heading in re.findall(r"^#+ (.+)$", text, re.M):  # GitHub's heading slugs
        anchors.add(re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-"))
    return anchors


def test_every_alerts_runbook_url_and_every_trigger_has_a_section():
    anchors = runbook_anchors()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "canary-guard.rules.yml").read_text())
    urls = {r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert urls
    for url in urls:
        assert url.partition("#")[2] in anchors, url
    for trigger in load_plan().triggers:
        assert trigger.name in anchors, trigger.name
    assert {"undo-the-undo", "running-the-five-phases", "scaling-out"} <= anchors


# -- Dockerfile --------------------------------------------------------------------------------

def stages(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line.strip(), re.I)
        if m:
            current = m.group(2) or m.group(1)
            out[current] = [line.strip()]
        elif current:
            out[current].append(line.strip())
    return out


def test_dockerfile_builds_every_component_into_a_non_root_image():
    text = (ROOT / "Dockerfile").read_text()
    st = stages(text)
    assert list(st)[-1] == "canary-guard"  # the default target is the plain image
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    build = "\n".join(st["build"])
    ignore = (ROOT / ".dockerignore").read_text().split()
    for folder in package_dirs.values():
        assert f"COPY {folder}/ {folder}/" in build, folder
        assert f"!{folder}/" in ignore, folder
    for name in ("runtime", "webhook", "canary-guard"):
        body = "\n".join(st[name])
        assert "USER" in body or st[name][0].startswith("FROM runtime"), name
    assert "USER 10001:10001" in "\n".join(st["runtime"])
    webhook = "\n".join(st["webhook"])
    assert st["webhook"][0] == "FROM runtime AS webhook"
    assert "COPY --from=kubectl /usr/bin/kubectl" in webhook
    assert "kubectl" not in "\n".join(st["canary-guard"])
    # the image's user matches the manifests' runAsUser
    for f in ("exporter.yaml", "webhook.yaml"):
        assert "runAsUser: 10001" in (DEPLOY / "kubernetes" / "base" / f).read_text()


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_dockerfile_parses_with_docker_when_a_daemon_runs():
    if subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode != 0:
        pytest.skip("docker daemon not running: the image cannot be built here")
    result = subprocess.run(["docker", "build", "--check", str(ROOT)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
