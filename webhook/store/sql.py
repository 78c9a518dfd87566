"""The SQL both backends share: every statement is written once, with ``?`` placeholders.

A backend (``sqlite.py``, ``postgres.py``) provides connections, transactions, the schema,
its row-locking clause for claims and a lock per coalescing group; ``SQLStore`` does the rest.

Exactly once, with any number of replicas:
- an incident is UNIQUE on (fingerprint, startsAt): the first transaction to insert it opens
  it and queues its run; every other delivery, on any replica, only counts;
- a run is claimed by one replica (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one
  writer) and carries that replica's ``owner`` id and a lease it renews while it works;
  every later change to the run is conditional on still owning it;
- a run whose lease expired is taken over by whoever claims it next.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from ..payload import Alert, Notification
from .base import (
    PAGE,
    QUEUED,
    Attempt,
    Recorded,
    RecordedAlert,
    Run,
    initial_run,
)
from .review import ReviewStore

log = logging.getLogger("webhook")

T = TypeVar("T")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Executor(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...


class LostLease(RuntimeError):
    """This process no longer owns the run (its lease ran out and another replica took it)."""


# -- statements --------------------------------------------------------------------------------

INSERT_NOTIFICATION = (
    "INSERT INTO notifications (received_at, status, receiver, group_key, alert_count, body) "
    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id"
)
# A repeated delivery: count it; a resolution is remembered (a late "firing" never un-resolves).
# A primary incident (one that opened a coalescing group) stays the group's latest sign of life.
TOUCH_INCIDENT = (
    "UPDATE incidents SET deliveries = deliveries + 1, last_seen = ?, "
    "status = CASE WHEN ? = 'resolved' THEN 'resolved' ELSE status END, "
    "resolved_at = CASE WHEN ? = 'resolved' THEN COALESCE(resolved_at, ?) ELSE resolved_at END, "
    "group_seen = CASE WHEN coalesce_key IS NOT NULL AND merged_into IS NULL THEN ? ELSE group_seen END "
    "WHERE fingerprint = ? AND starts_at = ? RETURNING id, resolved_at, merged_into"
)
INSERT_INCIDENT = (
    "INSERT INTO incidents (fingerprint, starts_at, alertname, action, track, endpoint, severity, "
    "status, labels, annotations, generator_url, notification_id, first_seen, last_seen, resolved_at, "
    "coalesce_key, group_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (fingerprint, starts_at) DO NOTHING RETURNING id"
)
FIND_GROUP = (
    "SELECT id FROM incidents WHERE coalesce_key = ? AND merged_into IS NULL AND group_seen >= ? "
    "AND id <> ? ORDER BY id DESC LIMIT 1"
)
INSERT_ALERT = "INSERT INTO alerts (notification_id, incident_id, status, duplicate) VALUES (?, ?, ?, ?)"
INSERT_RUN = (
    "INSERT INTO runs (incident_id, parent_run_id, action, status, reason, cause, dry_run, priority, "
    "created_at, updated_at, next_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
RUN_COLUMNS = (
    "r.id, r.incident_id, r.parent_run_id, r.action, r.status, r.reason, r.cause, r.step, r.attempt, "
    "r.dry_run, r.outcomes, i.labels, i.annotations, i.fingerprint, i.starts_at, r.priority"
)
COOLDOWN_UPSERT = (
    "INSERT INTO cooldowns (key, action, run_id, started_at, until) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET action = excluded.action, run_id = excluded.run_id, "
    "started_at = excluded.started_at, until = excluded.until "
    "WHERE cooldowns.until <= excluded.started_at RETURNING run_id"
)


def coalesce_key(labels: Mapping[str, str]) -> str:
    """What makes firings "the same alert": its name, track, endpoint and action."""
    return json.dumps([labels.get(k, "") for k in ("alertname", "track", "endpoint", "action")],
                      separators=(",", ":"))


class SQLStore(ReviewStore):
    """The store, over any DB-API-like backend. Subclasses set what differs."""

    #: appended to the run-claiming subquery (PostgreSQL: " FOR UPDATE SKIP LOCKED")
    LOCK_CLAUSE = ""
    #: errors after which the whole transaction is simply run again (PostgreSQL deadlocks)
    RETRY_ERRORS: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self.owner = f"{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()

    # -- what a backend provides -------------------------------------------------------------

    def _write(self) -> AbstractContextManager[Executor]:
        """One write transaction (committed on success, rolled back on an exception)."""
        raise NotImplementedError

    def _read(self) -> Executor:
        """A connection for reads outside any transaction (each statement sees committed data)."""
        raise NotImplementedError

    def _lock_group(self, c: Executor, key: str) -> None:
        """Serialise the transactions that may open the same coalescing group."""

    def _transaction(self, fn: Callable[[Executor], T]) -> T:
        for attempt in range(5):
            try:
                with self._write() as c:
                    return fn(c)
            except self.RETRY_ERRORS:
                if attempt == 4:
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- the request path --------------------------------------------------------------------

    def record(self, n: Notification, body: str, actions: Mapping[str, int], dry_run: bool = False,
               coalesce: float = 0.0, now: float | None = None) -> Recorded:
        now = time.time() if now is None else now
        # Rows are touched in one order (by incident key) so that two transactions on
        # PostgreSQL never wait on each other in a cycle.
        order = sorted(range(len(n.alerts)), key=lambda k: (n.alerts[k].fingerprint, n.alerts[k].starts_at))

        def tx(c: Executor) -> Recorded:
            nid = c.execute(INSERT_NOTIFICATION, (now, n.status, n.receiver, n.group_key, len(n.alerts),
                                                  body)).fetchone()[0]
            done = {k: self._record_alert(c, nid, n.alerts[k], actions, dry_run, coalesce, now)
                    for k in order}
            return Recorded(nid, [done[k] for k in range(len(n.alerts))])

        return self._transaction(tx)

    def _record_alert(self, c: Executor, nid: int, a: Alert, actions: Mapping[str, int], dry_run: bool,
                      coalesce: float, now: float) -> RecordedAlert:
        # Most deliveries repeat a known incident: touch it first (one indexed UPDATE); only a
        # miss pays for the INSERT and its JSON.
        touch = (now, a.status, a.status, now, now, a.fingerprint, a.starts_at)
        row = c.execute(TOUCH_INCIDENT, touch).fetchone()
        if row is None:
            labels = a.labels
            firing = a.status == "firing"
            key = coalesce_key(labels) if firing else None
            inserted = c.execute(INSERT_INCIDENT, (
                a.fingerprint, a.starts_at, labels.get("alertname", ""), labels.get("action"),
                labels.get("track"), labels.get("endpoint"), labels.get("severity"), a.status,
                json.dumps(labels), json.dumps(a.annotations), a.generator_url, nid, now, now,
                None if firing else now, key, now if firing else None,
            )).fetchone()
            if inserted is not None:
                return self._open_incident(c, nid, inserted[0], a, key, actions, dry_run, coalesce, now)
            # Another transaction opened it between our two statements (PostgreSQL, READ
            # COMMITTED): this delivery is a repeat after all.
            row = c.execute(TOUCH_INCIDENT, touch).fetchone()
        iid, resolved_at, merged_into = row
        if merged_into is not None:
            c.execute("UPDATE incidents SET group_seen = ? WHERE id = ?", (now, merged_into))
        # firing again is a repeat; resolved is news only the first time
        dup = a.status == "firing" or resolved_at != now
        c.execute(INSERT_ALERT, (nid, iid, a.status, int(dup)))
        return RecordedAlert(iid, a.status, a.action, False, dup, None, None)

    def _open_incident(self, c: Executor, nid: int, iid: int, a: Alert, key: str | None,
                       actions: Mapping[str, int], dry_run: bool, coalesce: float,
                       now: float) -> RecordedAlert:
        run_id = run_status = merged = None
        if key is not None:
            if coalesce > 0:
                self._lock_group(c, key)
                found = c.execute(FIND_GROUP, (key, now - coalesce, iid)).fetchone()
                if found is not None:
                    merged = found[0]
                    c.execute("UPDATE incidents SET merged_into = ?, group_seen = NULL WHERE id = ?",
                              (merged, iid))
                    c.execute("UPDATE incidents SET group_seen = ?, firings = firings + 1 WHERE id = ?",
                              (now, merged))
            if merged is None:
                run_status, reason = initial_run(a.action, actions)
                finished = None if run_status == QUEUED else now
                run_id = c.execute(INSERT_RUN, (
                    iid, None, a.action or "", run_status, reason, reason, int(dry_run),
                    actions.get(a.action or "", PAGE), now, now, now, finished)).fetchone()[0]
        c.execute(INSERT_ALERT, (nid, iid, a.status, 0))
        return RecordedAlert(iid, a.status, a.action, True, False, run_id, run_status, merged)

    # -- the worker --------------------------------------------------------------------------

    def recover(self, now: float | None = None) -> list[int]:
        return []

    def claim(self, lease: float, max_priority: int | None = None, now: float | None = None) -> Run | None:
        now = time.time() if now is None else now
        prio = PAGE if max_priority is None else max_priority
        r = self._read()
        expired = r.execute("SELECT 1 FROM runs WHERE status = 'running' AND lease_until < ? "
                            "AND priority <= ? LIMIT 1", (now, prio)).fetchone()
        due = expired or r.execute("SELECT 1 FROM runs WHERE status = 'queued' AND next_at <= ? "
                                   "AND priority <= ? LIMIT 1", (now, prio)).fetchone()
        if not due:
            return None  # the common case: no write transaction just to find nothing

        def tx(c: Executor) -> tuple[int, bool] | None:
            # A run a dead replica left behind comes first: it was already under way.
            row = c.execute(
                "UPDATE runs SET owner = ?, lease_until = ?, updated_at = ?, takeovers = takeovers + 1 "
                "WHERE id = (SELECT id FROM runs WHERE status = 'running' AND lease_until < ? "
                f"AND priority <= ? ORDER BY priority, id LIMIT 1{self.LOCK_CLAUSE}) RETURNING id",
                (self.owner, now + lease, now, now, prio)).fetchone()
            if row is not None:
                return row[0], True
            row = c.execute(
                "UPDATE runs SET status = 'running', owner = ?, lease_until = ?, updated_at = ? "
                "WHERE id = (SELECT id FROM runs WHERE status = 'queued' AND next_at <= ? "
                f"AND priority <= ? ORDER BY priority, next_at, id LIMIT 1{self.LOCK_CLAUSE}) RETURNING id",
                (self.owner, now + lease, now, now, prio)).fetchone()
            return None if row is None else (row[0], False)

        claimed = self._transaction(tx)
        if claimed is None:
            return None
        run_id, taken_over = claimed
        run = self.run(run_id)
        if run is None or not taken_over:
            return run
        row = self._read().execute(
            "SELECT id, step, step_action, attempt, outcome FROM attempts WHERE run_id = ? "
            "AND outcome = 'running' ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()
        inflight = None if row is None else Attempt(*row)
        return replace(run, taken_over=True, inflight=inflight)

    def renew(self, lease: float, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._write() as c:
            return c.execute("UPDATE runs SET lease_until = ? WHERE owner = ? AND status = 'running'",
                             (now + lease, self.owner)).rowcount

    def release(self) -> int:
        with self._write() as c:
            return c.execute("UPDATE runs SET lease_until = 0 WHERE owner = ? AND status = 'running'",
                             (self.owner,)).rowcount

    def run(self, run_id: int) -> Run | None:
        row = self._read().execute(
            f"SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN incidents i ON i.id = r.incident_id WHERE r.id = ?",
            (run_id,)).fetchone()
        if row is None:
            return None
        return Run(id=row[0], incident_id=row[1], parent_run_id=row[2], action=row[3], status=row[4],
                   reason=row[5], cause=row[6], step=row[7], attempt=row[8], dry_run=bool(row[9]),
                   outcomes=json.loads(row[10]), labels=json.loads(row[11] or "{}"),
                   annotations=json.loads(row[12] or "{}"), fingerprint=row[13] or "",
                   starts_at=row[14] or "", priority=row[15])

    def next_due(self, max_priority: int | None = None) -> float | None:
        prio = PAGE if max_priority is None else max_priority
        r = self._read()
        due = r.execute("SELECT MIN(next_at) FROM runs WHERE status = 'queued' AND priority <= ?",
                        (prio,)).fetchone()[0]
        lease = r.execute("SELECT MIN(lease_until) FROM runs WHERE status = 'running' AND owner <> ? "
                          "AND priority <= ?", (self.owner, prio)).fetchone()[0]
        times = [t for t in (due, lease) if t is not None]
        return min(times) if times else None

    def _owned(self, c: Executor, sql: str, params: tuple[Any, ...]) -> None:
        """Change a run this process owns; LostLease when another replica took it over."""
        if c.execute(sql + " AND owner = ?", (*params, self.owner)).rowcount == 0:
            raise LostLease(f"run {params[-1]} is no longer owned by this webhook ({self.owner})")

    def start_attempt(self, run_id: int, step: int, step_action: str, kind: str, attempt: int,
                      command: Any, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._write() as c:
            self._owned(c, "UPDATE runs SET step = ?, attempt = ?, updated_at = ? WHERE id = ?",
                        (step, attempt, now, run_id))
            return c.execute(
                "INSERT INTO attempts (run_id, step, step_action, kind, attempt, started_at, outcome, "
                "command) VALUES (?, ?, ?, ?, ?, ?, 'running', ?) RETURNING id",
                (run_id, step, step_action, kind, attempt, now, json.dumps(command))).fetchone()[0]

    def finish_attempt(self, attempt_id: int, outcome: str, retryable: bool, detail: str,
                       now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute("UPDATE attempts SET outcome = ?, retryable = ?, detail = ?, finished_at = ? "
                      "WHERE id = ?", (outcome, int(retryable), detail, now, attempt_id))

    def interrupt_attempt(self, attempt_id: int, detail: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute("UPDATE attempts SET outcome = 'interrupted', finished_at = ?, detail = ? "
                      "WHERE id = ? AND outcome = 'running'", (now, detail, attempt_id))

    def record_step(self, run_id: int, step: int, step_action: str, kind: str, outcome: str,
                    command: Any, detail: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            c.execute(
                "INSERT INTO attempts (run_id, step, step_action, kind, attempt, started_at, finished_at, "
                "outcome, command, detail) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
                (run_id, step, step_action, kind, now, now, outcome, json.dumps(command), detail))

    def progress(self, run_id: int, step: int, outcomes: list[dict[str, Any]],
                 now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            self._owned(c, "UPDATE runs SET step = ?, attempt = 0, outcomes = ?, updated_at = ? WHERE id = ?",
                        (step, json.dumps(outcomes), now, run_id))

    def requeue(self, run_id: int, step: int, attempt: int, next_at: float, reason: str,
                now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            self._owned(c, "UPDATE runs SET status = 'queued', step = ?, attempt = ?, next_at = ?, "
                           "reason = ?, updated_at = ?, owner = '', lease_until = 0 "
                           "WHERE status = 'running' AND id = ?",
                        (step, attempt, next_at, reason, now, run_id))

    def finish(self, run_id: int, status: str, reason: str, outcomes: list[dict[str, Any]],
               now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as c:
            self._owned(c, "UPDATE runs SET status = ?, reason = ?, outcomes = ?, updated_at = ?, "
                           "finished_at = ?, lease_until = 0 WHERE id = ?",
                        (status, reason, json.dumps(outcomes), now, now, run_id))

    def add_run(self, action: str, reason: str, incident_id: int | None, parent_run_id: int | None,
                dry_run: bool = False, status: str = QUEUED, priority: int = PAGE,
                now: float | None = None) -> int:
        now = time.time() if now is None else now
        finished = None if status == QUEUED else now
        with self._write() as c:
            return c.execute(INSERT_RUN, (incident_id, parent_run_id, action, status, reason, reason,
                                          int(dry_run), priority, now, now, now, finished)).fetchone()[0]

    def claim_cooldown(self, key: str, action: str, run_id: int, seconds: float,
                       now: float | None = None) -> dict[str, Any] | None:
        now = time.time() if now is None else now
        with self._write() as c:
            # Inserted, or an expired cooldown replaced: ours now. Otherwise someone holds it.
            if c.execute(COOLDOWN_UPSERT, (key, action, run_id, now, now + seconds)).fetchone():
                return None
            row = c.execute("SELECT action, run_id, started_at, until FROM cooldowns WHERE key = ?",
                            (key,)).fetchone()
        if row is None or row[1] == run_id:
            return None  # our own (a retry, or this run taken over after a crash)
        return {"action": row[0], "run_id": row[1], "started_at": row[2], "until": row[3]}

    def cooldown(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        now = time.time() if now is None else now
        row = self._read().execute("SELECT action, run_id, started_at, until FROM cooldowns "
                                   "WHERE key = ? AND until > ?", (key, now)).fetchone()
        if row is None:
            return None
        return {"action": row[0], "run_id": row[1], "started_at": row[2], "until": row[3]}

    # -- reading -----------------------------------------------------------------------------

    def queue_depth(self) -> int:
        return self._read().execute("SELECT COUNT(*) FROM runs WHERE status = 'queued'").fetchone()[0]

    def needs_review(self) -> int:
        return self._read().execute(
            "SELECT COUNT(*) FROM runs WHERE status = 'needs_review'").fetchone()[0]

    def counts(self) -> dict[str, int]:
        r = self._read()
        out = {name: r.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
               for name in ("notifications", "alerts", "incidents", "runs", "attempts")}
        for status, count in r.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            out[f"runs_{status}"] = count
        return out

    def actions(self, action: str | None = None, status: str | None = None,
                endpoint: str | None = None, since: float | None = None,
                incident: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, params = [], []
        for clause, value in (("r.action = ?", action), ("r.status = ?", status),
                              ("i.endpoint = ?", endpoint), ("r.created_at >= ?", since),
                              ("r.incident_id = ?", incident)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            "SELECT r.id, r.action, r.status, r.reason, r.dry_run, r.parent_run_id, r.created_at, "
            "r.updated_at, r.finished_at, r.next_at, r.outcomes, i.id, i.fingerprint, i.starts_at, "
            "i.alertname, i.track, i.endpoint, i.severity, i.status, i.deliveries, r.cause, r.priority, "
            "r.takeovers, i.firings, r.owner FROM runs r LEFT JOIN incidents i ON i.id = r.incident_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY r.id DESC LIMIT ?"
        )
        params.append(limit)
        r = self._read()
        runs = []
        for row in r.execute(sql, params):
            runs.append({
                "id": row[0], "action": row[1], "status": row[2], "reason": row[3], "cause": row[20],
                "priority": row[21], "dry_run": bool(row[4]), "escalated_from": row[5],
                "created_at": row[6], "updated_at": row[7], "finished_at": row[8],
                "next_attempt_at": row[9] if row[2] == QUEUED else None,
                "taken_over": row[22], "replica": row[24] or None, "steps": json.loads(row[10]),
                "incident": None if row[11] is None else {
                    "id": row[11], "fingerprint": row[12], "starts_at": row[13], "alertname": row[14],
                    "track": row[15], "endpoint": row[16], "severity": row[17], "status": row[18],
                    "deliveries": row[19], "firings": row[23],
                },
                "attempts": [],
            })
        if runs:
            by_id = {run["id"]: run for run in runs}
            marks = ",".join("?" * len(by_id))
            for row in r.execute(
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

    def incidents(self, limit: int = 100, merged: bool = False) -> list[dict[str, Any]]:
        """Incidents, newest first; firings coalesced into another are left out unless ``merged``."""
        rows = self._read().execute(
            "SELECT id, fingerprint, starts_at, alertname, action, track, endpoint, severity, status, "
            "annotations, first_seen, last_seen, deliveries, resolved_at, firings, merged_into, group_seen "
            "FROM incidents" + ("" if merged else " WHERE merged_into IS NULL")
            + " ORDER BY id DESC LIMIT ?", (limit,),
        ).fetchall()
        return [{
            "id": r[0], "fingerprint": r[1], "starts_at": r[2], "alertname": r[3], "action": r[4],
            "track": r[5], "endpoint": r[6], "severity": r[7], "status": r[8],
            "annotations": json.loads(r[9]), "first_seen": r[10], "last_seen": r[11],
            "deliveries": r[12], "resolved_at": r[13], "firings": r[14], "coalesced_into": r[15],
            "group_last_seen": r[16],
        } for r in rows]

    # -- housekeeping ------------------------------------------------------------------------

    def prune(self, before: float, keep: int = 0, batch: int = 2000) -> int:
        """Delete repeat deliveries (notifications and their alert rows): those received before
        ``before``, and beyond the newest ``keep`` (0: no limit). The notification that opened
        an incident is kept, as are incidents (the dedupe keys), runs and attempts: a
        still-firing alert from long ago must stay a duplicate. Deletes in batches of ``batch``,
        one short transaction each, so notifications are never held up for long. Returns the
        number of notifications deleted."""
        repeats = ("FROM notifications n WHERE NOT EXISTS "
                   "(SELECT 1 FROM incidents i WHERE i.notification_id = n.id)")
        below = None
        if keep:
            row = self._read().execute(f"SELECT n.id {repeats} ORDER BY n.id DESC LIMIT 1 OFFSET ?",
                                       (keep - 1,)).fetchone()
            below = row[0] if row else None
        deleted = 0
        while not self._stop.is_set():
            with self._write() as c:
                ids = [r[0] for r in c.execute(
                    f"SELECT n.id {repeats} AND (n.received_at < ? OR n.id < ?) ORDER BY n.id LIMIT ?",
                    (before, below if below is not None else -1, batch)).fetchall()]
                if not ids:
                    break
                marks = ",".join("?" * len(ids))
                c.execute(f"DELETE FROM alerts WHERE notification_id IN ({marks})", ids)
                deleted += c.execute(f"DELETE FROM notifications WHERE id IN ({marks})", ids).rowcount
            if len(ids) < batch:
                break
        return deleted

    def start_pruner(self, retention: float, keep: int = 0, every: float = 10.0) -> None:
        """Prune what is older than ``retention`` seconds (0: no age limit) or beyond the newest
        ``keep`` repeat deliveries, now and then every ``every`` seconds."""

        def loop() -> None:
            while True:
                try:
                    before = time.time() - retention if retention else 0.0
                    deleted = self.prune(before, keep)
                    if deleted:
                        log.info("pruned old deliveries", extra={"notifications": deleted})
                except Exception as err:  # the database may be briefly away: next round retries
                    log.warning("pruning failed; next round retries", extra={"error": str(err)})
                if self._stop.wait(every):
                    return

        threading.Thread(target=loop, name="webhook-prune", daemon=True).start()

    def start_background(self, retention: float, keep: int = 0) -> None:
        if retention or keep:
            self.start_pruner(retention, keep)
