"""A throw-away PostgreSQL 15 cluster for tests and benchmarks: initdb into a temporary folder,
started on a free port with its unix socket in that folder (no TCP), stopped and deleted after.

    with PostgresCluster() as pg:
        url = pg.create_database("t1")    # postgresql://postgres@/t1?host=/tmp/...&port=...

As root (CI, these machines) every server command runs as the ``postgres`` user, since
PostgreSQL refuses to run as root. The server binaries come from PATH, else from
/usr/lib/postgresql/<version>/bin (where Debian puts them, off PATH).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        real = Path(os.path.realpath(found)).parent
        if (real / "pg_ctl").exists() and (real / "postgres").exists():
            return real
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One server for a whole test session; each test takes its own database."""

    def __init__(self, durable: bool = False):
        # durable=False: fsync off, for tests (a crash of the machine loses the test database,
        # which is thrown away anyway). Benchmarks keep PostgreSQL's defaults.
        self.durable = durable
        self.bin = server_binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries not found (initdb on PATH or under "
                               "/usr/lib/postgresql/*/bin): run scripts/install-debs (make setup)")
        self.root = Path(tempfile.mkdtemp(prefix="cg-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self.user = "postgres" if self._as_postgres else os.environ.get("USER", "postgres")
        self.started = False

    def _run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.root)

    def start(self) -> PostgresCluster:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)
        try:
            self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                      "--no-instructions", "--locale=C.UTF-8")
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"initdb failed: {err.stderr or err.stdout}") from None
        opts = [f"-p {self.port}", "-c listen_addresses=''", f"-k {self.root}",
                "-c max_connections=200", "-c shared_buffers=64MB"]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                           "-o", " ".join(opts), "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}\n{log}")
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.root}&port={self.port}"

    def psql(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop",
                      check=False)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_counter = iter(range(1, 1 << 30))


def fresh_database(cluster: PostgresCluster, prefix: str = "t") -> str:
    """A database no other test uses, named ``<prefix>_<pid>_<n>_<time>``."""
    stamp = int(time.time() * 1000) % 10**8
    return cluster.create_database(f"{prefix}_{os.getpid()}_{next(_counter)}_{stamp}")
