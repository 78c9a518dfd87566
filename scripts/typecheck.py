#!/usr/bin/env python3
"""Type-check the shipped package with mypy (``make typecheck``; ``make test`` runs it first).

The components live in top-level folders but are imported as ``canary_guard.<name>``
(pyproject's package-dir), a mapping mypy cannot read, and the editable install reaches them
through an import hook mypy cannot follow. So this builds the package as Python imports it: a
tree of symlinks under build/typecheck/ (what setuptools' strict editable mode would build, but
rebuilt on every run, so a new module is never missed), checks it with pyproject's [tool.mypy],
and prints each error under the file's real path (exporter/app.py, not canary_guard/exporter/...).

Exit status: mypy's (0: no error).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
PACKAGE = "canary_guard"


def package_dirs() -> dict[str, str]:
    """``canary_guard.exporter`` -> ``exporter``: pyproject's package-dir, one level deep."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = data["tool"]["setuptools"]["package-dir"]
    return {name: folder for name, folder in mapping.items() if name != PACKAGE}


def build_tree() -> dict[str, str]:
    """Link the shared package's entries and the components into TREE/canary_guard; return
    the prefixes to rewrite in mypy's output (tree path -> real path)."""
    pkg = TREE / PACKAGE
    if TREE.exists():
        shutil.rmtree(TREE)
    pkg.mkdir(parents=True)
    for entry in (ROOT / PACKAGE).iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    rewrites = {}
    for name, folder in package_dirs().items():
        sub = name.removeprefix(PACKAGE + ".")
        (pkg / sub).symlink_to(ROOT / folder, target_is_directory=True)
        rewrites[f"{PACKAGE}/{sub}/"] = f"{folder}/"
    return rewrites


def main() -> int:
    rewrites = build_tree()
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
           "--cache-dir", str(ROOT / ".mypy_cache"), "-p", PACKAGE]
    proc = subprocess.run(cmd, cwd=TREE, capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        for tree_path, real in rewrites.items():
            if line.startswith(tree_path):
                line = real + line[len(tree_path):]
                break
        print(line)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
