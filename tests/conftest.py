"""Shared test fixtures: free ports, processes started and stopped by PID, the sandbox."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from canary_guard.plan import load_plan

CLI = [sys.executable, "-m", "canary_guard"]
DATA = Path(__file__).parent / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until GET url answers (any HTTP status), or fail with the process's output."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError as err:
            last = err
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


class Processes:
    """Starts processes with their output in files; stops every one of them by PID."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], name: str, ready_url: str | None = None,
              env: dict[str, str] | None = None, timeout: float = 15.0) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        if ready_url:
            try:
                wait_http(ready_url, timeout, proc)
            except Exception as err:
                raise RuntimeError(f"{name}: {err}\n{self.log(name)[-3000:]}") from None
        return proc

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


@pytest.fixture
def procs(tmp_path) -> Iterator[Processes]:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    p = Processes(logdir)
    try:
        yield p
    finally:
        p.stop_all()


@pytest.fixture
def plan():
    return load_plan()


def start_sandbox(procs: Processes, *extra: str, name: str = "sandbox",
                  env: dict[str, str] | None = None) -> str:
    """Start ``canary-guard sandbox`` on a free port; return its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs.start([*CLI, "sandbox", "--listen", f"127.0.0.1:{port}", *extra], name,
                ready_url=f"{url}/healthz", env=env)
    return url


@pytest.fixture
def sandbox(procs) -> str:
    """Base URL of a fresh simulated RecoveryOS (no API key required)."""
    return start_sandbox(procs, env={"RECOVERYOS_API_KEY": ""})


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: run scripts/install-debs (make setup) first")
    return path


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throw-away PostgreSQL 15 server for the session (tests/postgres_helpers.py)."""
    from postgres_helpers import PostgresCluster

    cluster = PostgresCluster()
    try:
        cluster.start()
    except RuntimeError as err:
        pytest.fail(str(err))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    from postgres_helpers import fresh_database

    return fresh_database(postgres_cluster)
