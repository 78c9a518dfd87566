"""Running a plan's command: an argv list (never a shell), a timeout, the whole process group
killed on expiry, and a short record of what it printed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

OUTPUT_LIMIT = 2000  # characters of stdout/stderr kept for the audit trail


@dataclass(frozen=True, slots=True)
class Finished:
    ok: bool
    outcome: str  # ok | failed | timeout | not_found
    detail: str
    stdout: str = ""
    started: bool = True  # False: the program could not be started at all


def find_executable(name: str) -> str | None:
    """``name`` on PATH, or an absolute path that is executable."""
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


def run_argv(argv: list[str], timeout: float, env: dict[str, str] | None = None,
             scrub: Callable[[str], str] | None = None) -> Finished:
    """Run argv with a timeout in its own session; kill the session's processes on expiry.
    ``scrub`` cleans what the detail quotes of the output (the webhook masks secrets)."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
    except OSError as err:
        return Finished(False, "not_found" if isinstance(err, FileNotFoundError) else "failed",
                        f"cannot start {argv[0]}: {err.strerror or err}", started=False)
    try:
        out, errors = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, errors = proc.communicate()
        return Finished(False, "timeout", f"killed after {timeout:g}s timeout" + output(out, errors, scrub))
    text = out.decode("utf-8", "replace")
    if proc.returncode == 0:
        took = time.monotonic() - started
        return Finished(True, "ok", f"exit 0 in {took:.2f}s" + output(out, errors, scrub), text)
    return Finished(False, "failed", f"exit {proc.returncode}" + output(out, errors, scrub), text)


def output(out: bytes, err: bytes, scrub: Callable[[str], str] | None = None) -> str:
    parts = []
    for name, data in (("stdout", out), ("stderr", err)):
        text = data.decode("utf-8", "replace").strip()
        if text:
            tail = text[-OUTPUT_LIMIT:]
            parts.append(f"{name}: {scrub(tail) if scrub else tail}")
    return ("; " + "; ".join(parts)) if parts else ""
