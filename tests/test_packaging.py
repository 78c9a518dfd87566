"""The wheel: built without warnings, and carrying every module and data file of the checkout.

A subpackage missing from pyproject's package list installs fine in editable mode and is absent
from the wheel (and the Docker image); this test catches that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# installed name -> folder in the checkout (pyproject's package-dir)
FOLDERS = {"canary_guard": "canary_guard", "canary_guard/exporter": "exporter",
           "canary_guard/rules": "rules", "canary_guard/webhook": "webhook",
           "canary_guard/sandbox": "sandbox", "canary_guard/demo": "demo", "canary_guard/gate": "gate",
           "canary_guard/dashboard": "dashboard", "canary_guard/rollout": "rollout"}
DATA = (".py", ".yaml", ".html")


def tracked() -> list[str]:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in files.decode().split("\0") if name and (ROOT / name).is_file()]


def expected_files() -> set[str]:
    """Every tracked module and data file of the package folders, by its installed name."""
    out = set()
    for name in tracked():
        if not name.endswith(DATA):
            continue
        folder, _, rest = name.partition("/")
        installed = next((i for i, f in FOLDERS.items() if f == folder), None)
        if installed and rest:
            out.add(f"{installed}/{rest}")
    return out


def checkout_copy(dest: Path) -> Path:
    """The tracked files only (setuptools builds in the source tree: not in this checkout)."""
    for name in tracked():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


def test_the_wheel_builds_cleanly_and_holds_everything(tmp_path):
    source = checkout_copy(tmp_path / "src")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    log = build.stdout + build.stderr
    assert build.returncode == 0, log[-3000:]
    warnings = [line.strip() for line in log.splitlines() if "Warning" in line and "warn(" not in line]
    assert not warnings, "\n".join(warnings)
    (wheel,) = tmp_path.glob("canary_guard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = expected_files() - names
    assert not missing, sorted(missing)
    assert "canary_guard/plans/recoveryos.yaml" in names
    assert "canary_guard/webhook/templates/index.html" in names
