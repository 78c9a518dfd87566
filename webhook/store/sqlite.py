"""The SQLite store: notifications, alerts, incidents, action runs, attempts, cooldowns.

One SQLite file in WAL mode. Every notification is written in one transaction *before* the
HTTP reply, together with its alerts, the incidents they open and the action runs those
queue; so a notification that was acknowledged is never lost, and one that was not leaves
nothing behind. Incidents are unique on (fingerprint, startsAt) (a UNIQUE constraint): a
repeated delivery (Alertmanager retries, repeat_interval, an HA pair) finds its incident in
the same write transaction, counts a delivery and queues nothing, across restarts too.

Writers in this process take one lock, so SQLite never has to make a writer wait (its busy
handler sleeps in whole milliseconds, which would ruin the acknowledgement latency).
Each thread has its own connection; readers never block in WAL mode.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..payload import Notification
from .base import (
    INTERRUPTED_REASON,
    NEEDS_REVIEW,
    QUEUED,
    RUNNING,
    Recorded,
    RecordedAlert,
    Run,
    StoreLocked,
    initial_run,
)

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
CREATE INDEX IF NOT EXISTS runs_queue ON runs (next_at) WHERE status = 'queued';
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

_INSERT_NOTIFICATION = (
    "INSERT INTO notifications (received_at, status, receiver, group_key, alert_count, body) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_INCIDENT = (
    "INSERT INTO incidents (fingerprint, starts_at, alertname, action, track, endpoint, "
    "severity, status, labels, annotations, generator_url, notification_id, first_seen, last_seen, "
    "resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A repeated delivery: count it; a resolution is remembered (a late "firing" never un-resolves).
_TOUCH_INCIDENT = (
    "UPDATE incidents SET deliveries = deliveries + 1, last_seen = ?1, "
    "status = CASE WHEN ?2 = 'resolved' THEN 'resolved' ELSE status END, "
    "resolved_at = CASE WHEN ?2 = 'resolved' THEN COALESCE(resolved_at, ?1) ELSE resolved_at END "
    "WHERE fingerprint = ?3 AND starts_at = ?4 RETURNING id, resolved_at"
)
_INSERT_ALERT = (
    "INSERT INTO alerts (notification_id, incident_id, status, duplicate) VALUES (?, ?, ?, ?)"
)
_INSERT_RUN = (
    "INSERT INTO runs (incident_id, parent_run_id, action, status, reason, cause, dry_run, created_at, "
    "updated_at, next_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SQLiteStore:
    def __init__(self, path: str | os.PathLike[str], exclusive: bool = True):
        self.path = str(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._lockfile = None
        self._checkpointing = False
        self._stop = threading.Event()
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
            self._local.conn = conn
        return conn

    def start_checkpointer(self, interval: float = 0.5) -> None:
        """Copy the WAL into the database every ``interval`` seconds from a background thread."""
        self._checkpointing = True
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.execute("PRAGMA wal_autocheckpoint=0")

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # busy or closing: the next round catches up

        threading.Thread(target=loop, name="webhook-checkpoint", daemon=True).start()

    def prune(self, before: float) -> int:
        """Delete the notifications received before ``before`` and their alert rows, except
        the notification that opened an incident. Incidents (the dedupe keys), runs and
        attempts are never pruned: a still-firing alert from long ago must stay a duplicate.
        Returns the number of notifications deleted."""
        old = ("SELECT id FROM notifications WHERE received_at < ? "
               "AND id NOT IN (SELECT notification_id FROM incidents)")
        with self._write() as conn:
            conn.execute(f"DELETE FROM alerts WHERE notification_id IN ({old})", (before,))
            return conn.execute(f"DELETE FROM notifications WHERE id IN ({old})", (before,)).rowcount

    def start_pruner(self, retention: float, every: float = 3600.0) -> None:
        """Prune what is older than ``retention`` seconds now, then every ``every`` seconds."""

        def loop() -> None:
            while True:
                try:
                    deleted = self.prune(time.time() - retention)
                    if deleted:
                        log.info("pruned old deliveries", extra={"notifications": deleted})
                except sqlite3.Error as err:
                    log.warning("pruning failed; next round retries", extra={"error": str(err)})
                if self._stop.wait(every):
                    return

        threading.Thread(target=loop, name="webhook-prune", daemon=True).start()

    def start_background(self, retention: float) -> None:
        self.start_checkpointer()
        if retention:
            self.start_pruner(retention)

    def _write(self):
        return _Tx(self._lock, self._conn())

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

    # -- the request path -----------------------------------------------------------------

    def record(self, n: Notification, body: str, known_actions: dict[str, Any] | set[str],
               dry_run: bool = False, now: float | None = None) -> Recorded:
        """Record a notification with its alerts; open incidents and queue their runs."""
        now = time.time() if now is None else now
        out: list[RecordedAlert] = []
        with self._write() as c:
            nid = c.execute(_INSERT_NOTIFICATION, (now, n.status, n.receiver, n.group_key,
                                                   len(n.alerts), body)).lastrowid
            for a in n.alerts:
                # Most deliveries repeat a known incident: touch it first (one indexed UPDATE);
                # only a miss pays for the INSERT and its JSON. Both run inside this write
                # transaction, so no other writer can slip in between.
                row = c.execute(_TOUCH_INCIDENT, (now, a.status, a.fingerprint, a.starts_at)).fetchone()
                run_id = run_status = None
                if row is None:
                    labels = a.labels
                    iid = c.execute(_INSERT_INCIDENT, (
                        a.fingerprint, a.starts_at, labels.get("alertname", ""), labels.get("action"),
                        labels.get("track"), labels.get("endpoint"), labels.get("severity"), a.status,
                        json.dumps(labels), json.dumps(a.annotations), a.generator_url, nid, now, now,
                        now if a.status == "resolved" else None,
                    )).lastrowid
                    new, dup = True, False
                    if a.status == "firing":
                        run_status, reason = initial_run(a.action, known_actions)
                        finished = None if run_status == QUEUED else now
                        run_id = c.execute(_INSERT_RUN, (iid, None, a.action or "", run_status, reason,
                                                         reason, int(dry_run), now, now, now,
                                                         finished)).lastrowid
                else:
                    iid, resolved_at = row
                    new = False
                    # firing again is a repeat; resolved is news only the first time
                    dup = a.status == "firing" or resolved_at != now
                c.execute(_INSERT_ALERT, (nid, iid, a.status, int(dup)))
                out.append(RecordedAlert(iid, a.status, a.action, new, dup, run_id, run_status))
        return Recorded(nid, out)

    # -- the worker -----------------------------------------------------------------------

    def recover(self, now: float | None = None) -> list[int]:
        """After a restart: runs that were mid-flight are marked needs_review, never re-run."""
        now = time.time() if now is None else now
        with self._write() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM runs WHERE status = ?", (RUNNING,))]
            for rid in ids:
                c.execute(
                    "UPDATE runs SET status = ?, updated_at = ?, finished_at = ?, reason = ? "
                    "WHERE id = ?",
                    (NEEDS_REVIEW, now, now, INTERRUPTED_REASON, rid),
                )
                c.execute("UPDATE attempts SET outcome = 'interrupted', finished_at = ?, "
                          "detail = 'process stopped mid-attempt' WHERE run_id = ? AND outcome = 'running'",
                          (now, rid))
        return ids

    def claim(self, now: float | None = None) -> Run | None:
        """Take the next due queued run (marking it running), or None."""
        now = time.time() if now is None else now
        # literal 'queued': the partial index runs_queue serves it
        sql = "SELECT id FROM runs WHERE status = 'queued' AND next_at <= ? ORDER BY next_at, id LIMIT 1"
        if self._conn().execute(sql, (now,)).fetchone() is None:
            return None  # the common case: no write transaction just to find nothing
        with self._write() as c:
            row = c.execute(sql, (now,)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", (RUNNING, now, row[0]))
        return self.run(row[0])

    def run(self, run_id: int) -> Run | None:
        row = self._conn().execute(
            "SELECT r.id, r.incident_id, r.parent_run_id, r.action, r.status, r.reason, r.cause, r.step, "
            "r.attempt, r.dry_run, r.outcomes, i.labels, i.annotations, i.fingerprint, i.starts_at "
            "FROM runs r LEFT JOIN incidents i ON i.id = r.incident_id WHERE r.id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        return Run(id=row[0], incident_id=row[1], parent_run_id=row[2], action=row[3], status=row[4],
                   reason=row[5], cause=row[6], step=row[7], attempt=row[8], dry_run=bool(row[9]),
                   outcomes=json.loads(row[10]), labels=json.loads(row[11] or "{}"),
                   annotations=json.loads(row[12] or "{}"), fingerprint=row[13] or "",
                   starts_at=row[14] or "")

    def next_due(self) -> float | None:
        row = self._conn().execute("SELECT MIN(next_at) FROM runs WHERE status = 'queued'").fetchone()
        return row[0]

    def start_attempt(self, run_id: int, step: int, step_action: str, kind: str, attempt: int,
                      command: Any, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute("UPDATE runs SET step = ?, attempt = ?, updated_at = ? WHERE id = ?",
                      (step, attempt, now, run_id))
            return c.execute(
                "INSERT INTO attempts (run_id, step, step_action, kind, attempt, started_at, outcome, "
                "command) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
                (run_id, step, step_action, kind, attempt, now, json.dumps(command)),
            ).lastrowid

    def finish_attempt(self, attempt_id: int, outcome: str, retryable: bool, detail: str,
                       now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute("UPDATE attempts SET outcome = ?, retryable = ?, detail = ?, finished_at = ? "
                      "WHERE id = ?", (outcome, int(retryable), detail, now, attempt_id))

    def record_step(self, run_id: int, step: int, step_action: str, kind: str, outcome: str,
                    command: Any, detail: str, now: float | None = None) -> None:
        """An attempt that was decided without running anything (cooldown, refusal, dry run)."""
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute(
                "INSERT INTO attempts (run_id, step, step_action, kind, attempt, started_at, finished_at, "
                "outcome, command, detail) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
                (run_id, step, step_action, kind, now, now, outcome, json.dumps(command), detail),
            )

    def progress(self, run_id: int, step: int, outcomes: list[dict[str, Any]],
                 now: float | None = None) -> None:
        """A step finished: remember its outcome and move on (the run stays running)."""
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute("UPDATE runs SET step = ?, attempt = 0, outcomes = ?, updated_at = ? WHERE id = ?",
                      (step, json.dumps(outcomes), now, run_id))

    def requeue(self, run_id: int, step: int, attempt: int, next_at: float, reason: str,
                now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute("UPDATE runs SET status = ?, step = ?, attempt = ?, next_at = ?, reason = ?, "
                      "updated_at = ? WHERE id = ? AND status = ?",
                      (QUEUED, step, attempt, next_at, reason, now, run_id, RUNNING))

    def finish(self, run_id: int, status: str, reason: str, outcomes: list[dict[str, Any]],
               now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute("UPDATE runs SET status = ?, reason = ?, outcomes = ?, updated_at = ?, "
                      "finished_at = ? WHERE id = ?",
                      (status, reason, json.dumps(outcomes), now, now, run_id))

    def add_run(self, action: str, reason: str, incident_id: int | None, parent_run_id: int | None,
                dry_run: bool = False, status: str = QUEUED, now: float | None = None) -> int:
        now = time.time() if now is None else now
        finished = None if status == QUEUED else now
        with self._write() as c:
            return c.execute(_INSERT_RUN, (incident_id, parent_run_id, action, status, reason, reason,
                                           int(dry_run), now, now, now, finished)).lastrowid

    def claim_cooldown(self, key: str, action: str, run_id: int, seconds: float,
                       now: float | None = None) -> dict[str, Any] | None:
        """Start the cooldown for ``key``; returns the holder when another run holds it."""
        now = time.time() if now is None else now
        with self._write() as c:
            row = c.execute("SELECT action, run_id, started_at, until FROM cooldowns WHERE key = ?",
                            (key,)).fetchone()
            if row and row[3] > now and row[1] != run_id:
                return {"action": row[0], "run_id": row[1], "started_at": row[2], "until": row[3]}
            if not row or row[1] != run_id:
                c.execute("INSERT OR REPLACE INTO cooldowns (key, action, run_id, started_at, until) "
                          "VALUES (?, ?, ?, ?, ?)", (key, action, run_id, now, now + seconds))
        return None

    def cooldown(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        now = time.time() if now is None else now
        row = self._conn().execute("SELECT action, run_id, started_at, until FROM cooldowns "
                                   "WHERE key = ? AND until > ?", (key, now)).fetchone()
        if row is None:
            return None
        return {"action": row[0], "run_id": row[1], "started_at": row[2], "until": row[3]}

    # -- reading ----------------------------------------------------------------------------

    def queue_depth(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM runs WHERE status = 'queued'").fetchone()[0]

    def counts(self) -> dict[str, int]:
        c = self._conn()
        out = {name: c.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
               for name in ("notifications", "alerts", "incidents", "runs", "attempts")}
        for status, count in c.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            out[f"runs_{status}"] = count
        return out

    def actions(self, action: str | None = None, status: str | None = None,
                endpoint: str | None = None, since: float | None = None,
                incident: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The audit trail: runs, newest first, each with its incident and every attempt."""
        where, params = [], []
        if action:
            where.append("r.action = ?")
            params.append(action)
        if status:
            where.append("r.status = ?")
            params.append(status)
        if endpoint:
            where.append("i.endpoint = ?")
            params.append(endpoint)
        if since is not None:
            where.append("r.created_at >= ?")
            params.append(since)
        if incident is not None:
            where.append("r.incident_id = ?")
            params.append(incident)
        sql = (
            "SELECT r.id, r.action, r.status, r.reason, r.dry_run, r.parent_run_id, r.created_at, "
            "r.updated_at, r.finished_at, r.next_at, r.outcomes, i.id, i.fingerprint, i.starts_at, "
            "i.alertname, i.track, i.endpoint, i.severity, i.status, i.deliveries, r.cause "
            "FROM runs r LEFT JOIN incidents i ON i.id = r.incident_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY r.id DESC LIMIT ?"
        )
        params.append(limit)
        conn = self._conn()
        runs = []
        for row in conn.execute(sql, params):
            runs.append({
                "id": row[0], "action": row[1], "status": row[2], "reason": row[3], "cause": row[20],
                "dry_run": bool(row[4]), "escalated_from": row[5], "created_at": row[6],
                "updated_at": row[7], "finished_at": row[8],
                "next_attempt_at": row[9] if row[2] == QUEUED else None,
                "steps": json.loads(row[10]),
                "incident": None if row[11] is None else {
                    "id": row[11], "fingerprint": row[12], "starts_at": row[13], "alertname": row[14],
                    "track": row[15], "endpoint": row[16], "severity": row[17], "status": row[18],
                    "deliveries": row[19],
                },
                "attempts": [],
            })
        if runs:
            by_id = {r["id"]: r for r in runs}
            marks = ",".join("?" * len(by_id))
            for row in conn.execute(
                "SELECT run_id, step, step_action, kind, attempt, started_at, finished_at, outcome, "
                f"retryable, command, detail FROM attempts WHERE run_id IN ({marks}) ORDER BY id",
                list(by_id),
            ):
                by_id[row[0]]["attempts"].append({
                    "step": row[1], "action": row[2], "kind": row[3], "attempt": row[4],
                    "started_at": row[5], "finished_at": row[6], "outcome": row[7],
                    "retryable": bool(row[8]), "command": json.loads(row[9]), "detail": row[10],
                })
        return runs

    def incidents(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT id, fingerprint, starts_at, alertname, action, track, endpoint, severity, status, "
            "annotations, first_seen, last_seen, deliveries, resolved_at FROM incidents "
            "ORDER BY id DESC LIMIT ?", (limit,),
        ).fetchall()
        return [{
            "id": r[0], "fingerprint": r[1], "starts_at": r[2], "alertname": r[3], "action": r[4],
            "track": r[5], "endpoint": r[6], "severity": r[7], "status": r[8],
            "annotations": json.loads(r[9]), "first_seen": r[10], "last_seen": r[11],
            "deliveries": r[12], "resolved_at": r[13],
        } for r in rows]


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

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
