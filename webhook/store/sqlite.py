"""The SQLite store: one file in WAL mode, one webhook process per file (a lock file).

Every notification is written in one transaction *before* the HTTP reply, with its alerts,
the incidents they open and the runs those queue (see ``sql.py``). Writers in this process
take one lock, so SQLite never has to make a writer wait (its busy handler sleeps in whole
milliseconds, which would ruin the acknowledgement latency). Each thread has its own
connection; readers never block in WAL mode.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from pathlib import Path
from types import TracebackType

from . import review
from .base import StoreLocked
from .sql import SQLStore

log = logging.getLogger("webhook")

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id            INTEGER PRIMARY KEY,
    received_at   REAL NOT NULL,
    status        TEXT NOT NULL,
    receiver      TEXT NOT NULL,
    group_key     TEXT NOT NULL,
    alert_count   INTEGER NOT NULL,
    body          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id             INTEGER PRIMARY KEY,
    fingerprint    TEXT NOT NULL,
    starts_at      TEXT NOT NULL,
    alertname      TEXT NOT NULL,
    action         TEXT,
    track          TEXT,
    endpoint       TEXT,
    severity       TEXT,
    status         TEXT NOT NULL,
    labels         TEXT NOT NULL,
    annotations    TEXT NOT NULL,
    generator_url  TEXT NOT NULL,
    notification_id INTEGER NOT NULL REFERENCES notifications(id),
    first_seen     REAL NOT NULL,
    last_seen      REAL NOT NULL,
    deliveries     INTEGER NOT NULL DEFAULT 1,
    resolved_at    REAL,
    UNIQUE (fingerprint, starts_at)
);
CREATE TABLE IF NOT EXISTS alerts (
    id              INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications(id),
    incident_id     INTEGER NOT NULL REFERENCES incidents(id),
    status          TEXT NOT NULL,
    duplicate       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id            INTEGER PRIMARY KEY,
    incident_id   INTEGER REFERENCES incidents(id),
    parent_run_id INTEGER REFERENCES runs(id),
    action        TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    cause         TEXT NOT NULL DEFAULT '',
    step          INTEGER NOT NULL DEFAULT 0,
    attempt       INTEGER NOT NULL DEFAULT 0,
    dry_run       INTEGER NOT NULL DEFAULT 0,
    outcomes      TEXT NOT NULL DEFAULT '[]',
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    next_at       REAL NOT NULL,
    finished_at   REAL
);
CREATE INDEX IF NOT EXISTS runs_incident ON runs (incident_id);
CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    step        INTEGER NOT NULL,
    step_action TEXT NOT NULL,
    kind        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    outcome     TEXT NOT NULL,
    retryable   INTEGER NOT NULL DEFAULT 0,
    command     TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_run ON attempts (run_id);
CREATE TABLE IF NOT EXISTS cooldowns (
    key        TEXT PRIMARY KEY,
    action     TEXT NOT NULL,
    run_id     INTEGER NOT NULL,
    started_at REAL NOT NULL,
    until      REAL NOT NULL
);
"""

# Columns added since the first schema: a database from an older webhook gets them on open.
ADDED_COLUMNS = (
    ("incidents", "coalesce_key", "TEXT"),  # alertname/track/endpoint; NULL: opened resolved
    ("incidents", "merged_into", "INTEGER REFERENCES incidents(id)"),  # coalesced into that incident
    ("incidents", "group_seen", "REAL"),  # primaries: last delivery of any firing of the group
    ("incidents", "firings", "INTEGER NOT NULL DEFAULT 1"),
    ("runs", "priority", "INTEGER NOT NULL DEFAULT 2"),
    ("runs", "owner", "TEXT NOT NULL DEFAULT ''"),
    ("runs", "lease_until", "REAL NOT NULL DEFAULT 0"),
    ("runs", "takeovers", "INTEGER NOT NULL DEFAULT 0"),
)
INDEXES = """
DROP INDEX IF EXISTS runs_queue;
CREATE INDEX IF NOT EXISTS runs_due ON runs (priority, next_at, id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS runs_leased ON runs (lease_until) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS incidents_group ON incidents (coalesce_key, id)
    WHERE coalesce_key IS NOT NULL AND merged_into IS NULL;
CREATE INDEX IF NOT EXISTS incidents_notification ON incidents (notification_id);
CREATE INDEX IF NOT EXISTS alerts_notification ON alerts (notification_id);
"""
# The WAL is copied into the database every half second; when it still grew past this (readers
# kept it from being reset under a steady stream of writes), the next checkpoint waits for a
# moment with no writer and truncates it. journal_size_limit trims what a reset leaves behind.
WAL_LIMIT = 8 << 20


class SQLiteStore(SQLStore):
    def __init__(self, path: str | os.PathLike[str], exclusive: bool = True):
        super().__init__()
        self.path = str(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._lockfile = None
        self._checkpointing = False
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            if exclusive:
                # Two webhooks on one database would both run the same queued actions.
                self._lockfile = open(self.path + ".lock", "a+")  # noqa: SIM115
                try:
                    fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self._lockfile.close()
                    raise StoreLocked(f"{self.path} is in use by another canary-guard webhook") from None
        conn = self._conn()
        with self._lock:
            conn.executescript(SCHEMA)
            for table, column, decl in ADDED_COLUMNS:
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            conn.executescript(INDEXES)
            conn.executescript(review.SQLITE_SCHEMA)  # people's decisions (issue 11)

    # -- connections ----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   cached_statements=256)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            conn.execute("PRAGMA busy_timeout=10000")
            # Checkpoints run on their own thread (start_checkpointer), not inside the commit
            # of whichever request happens to cross the WAL size threshold.
            conn.execute(f"PRAGMA wal_autocheckpoint={0 if self._checkpointing else 1000}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            self._local.conn = conn
        return conn

    def _read(self) -> sqlite3.Connection:
        return self._conn()

    def _write(self) -> _Tx:
        return _Tx(self._lock, self._conn())

    def recover(self, now: float | None = None) -> list[int]:
        """One process per file: whatever a previous process left running is orphaned now."""
        with self._write() as c:
            return [row[0] for row in c.execute(
                "UPDATE runs SET lease_until = 0 WHERE status = 'running' RETURNING id").fetchall()]

    # -- housekeeping -----------------------------------------------------------------------

    def start_checkpointer(self, interval: float = 0.5) -> None:
        """Copy the WAL into the database every ``interval`` seconds from a background thread."""
        self._checkpointing = True
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.execute("PRAGMA wal_autocheckpoint=0")

        wal = self.path + "-wal"

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    conn = self._conn()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    if os.path.getsize(wal) > WAL_LIMIT:
                        # Under the process write lock no writer of ours is in the way; readers
                        # are short, and SQLite's busy handler waits for them.
                        with self._lock:
                            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except (sqlite3.Error, OSError):
                    pass  # busy or closing: the next round catches up

        threading.Thread(target=loop, name="webhook-checkpoint", daemon=True).start()

    def start_background(self, retention: float, keep: int = 0) -> None:
        self.start_checkpointer()
        super().start_background(retention, keep)

    def close(self) -> None:
        self._stop.set()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            conn.close()
            self._local.conn = None
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None


class _Tx:
    """``with store._write() as conn``: one IMMEDIATE transaction under the process write lock."""

    __slots__ = ("lock", "conn")

    def __init__(self, lock: threading.Lock, conn: sqlite3.Connection):
        self.lock, self.conn = lock, conn

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
