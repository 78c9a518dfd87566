"""What every store backend provides: the statuses, the records it returns, the Store protocol.

A store is the webhook's durable record: notifications, their alerts, the incidents they open
(unique on fingerprint + startsAt), the action runs those queue, every attempt, and the
cooldowns. Two backends implement it: SQLite (``sqlite.py``, embedded, one process) and
PostgreSQL (``postgres.py``, any number of replicas); the SQL they share is in ``sql.py``.

Work is shared through the ``runs`` table: a replica claims a run (status ``running``, its
``owner`` id, a ``lease_until`` it keeps renewing). A run whose lease ran out belongs to a
replica that died: another takes it over, and the worker decides per step whether the step
that was in flight is safe to repeat.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from ..payload import Notification

# Run statuses. Terminal ones never change again.
QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, PARTIAL = "succeeded", "failed", "partial"
REFUSED, COOLDOWN = "refused", "cooldown"
NEEDS_REVIEW, UNKNOWN_ACTION, DRY_RUN = "needs_review", "unknown_action", "dry_run"
RUN_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, PARTIAL, REFUSED, COOLDOWN, NEEDS_REVIEW,
                UNKNOWN_ACTION, DRY_RUN)

# Run priorities, most urgent first: the worker always takes the most urgent due run.
EMERGENCY, ROLLBACK, CHANGE, PAGE = 0, 1, 2, 3
PRIORITY_NAMES = {EMERGENCY: "emergency", ROLLBACK: "rollback", CHANGE: "change", PAGE: "page"}


@dataclass(frozen=True, slots=True)
class RecordedAlert:
    incident_id: int
    status: str
    action: str | None
    new: bool
    duplicate: bool
    run_id: int | None
    run_status: str | None
    coalesced_into: int | None = None  # a new firing recorded against this earlier incident


@dataclass(frozen=True, slots=True)
class Recorded:
    notification_id: int
    alerts: list[RecordedAlert]


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    step: int
    step_action: str
    attempt: int
    outcome: str


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    incident_id: int | None
    parent_run_id: int | None
    action: str
    status: str
    reason: str
    cause: str  # why the run exists (escalations: what failed)
    step: int
    attempt: int
    dry_run: bool
    outcomes: list[dict[str, Any]]
    labels: dict[str, str]
    annotations: dict[str, str]
    fingerprint: str
    starts_at: str
    priority: int = CHANGE
    taken_over: bool = False  # claimed from a replica (or a process) that stopped mid-run
    inflight: Attempt | None = None  # taken over: the attempt that was running when it stopped


class StoreLocked(RuntimeError):
    """The database is in use by another webhook (SQLite: one webhook per file)."""


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or opened (a clear message for the operator)."""


def initial_run(action: str | None, known: Mapping[str, Any] | set[str]) -> tuple[str, str]:
    """The status and reason of a new firing incident's run: queued, or why not."""
    if not action:
        return UNKNOWN_ACTION, "the alert has no action label: nothing to run"
    if action not in known:
        names = ", ".join(sorted(known)) or "none"
        return UNKNOWN_ACTION, f"no action named {action!r} in the plan (defined: {names}); not run"
    return QUEUED, ""


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://..."
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Store(Protocol):
    """The durable record. Every method is safe to call from any thread.

    ``owner`` is this process's id: the runs it claims carry it, and every change to a claimed
    run is made only while this process still owns it.
    """

    owner: str

    # -- the request path
    def record(self, n: Notification, body: str, actions: Mapping[str, int], dry_run: bool = False,
               coalesce: float = 0.0, now: float | None = None) -> Recorded:
        """Record a notification with its alerts, open incidents and queue their runs, in one
        transaction committed before this returns. ``actions``: plan action name -> priority.
        A new firing of the same alert, track and endpoint as an incident seen less than
        ``coalesce`` seconds ago is recorded against that incident and queues nothing."""

    # -- the worker
    def recover(self, now: float | None = None) -> list[int]:
        """At start (SQLite): runs left ``running`` by a previous process become claimable now."""

    def claim(self, lease: float, max_priority: int | None = None, now: float | None = None) -> Run | None:
        """Take the most urgent due run, or a running run whose lease expired, or None."""

    def renew(self, lease: float, now: float | None = None) -> int:
        """Extend the lease of every run this process owns; returns how many."""

    def release(self) -> int:
        """Give up the leases of this process's runs (on shutdown) so others take over at once."""

    def run(self, run_id: int) -> Run | None: ...

    def next_due(self, max_priority: int | None = None) -> float | None:
        """When the next run (at most ``max_priority``) is due or the next lease expires (unix
        seconds), or None."""

    def start_attempt(self, run_id: int, step: int, step_action: str, kind: str, attempt: int,
                      command: Any, now: float | None = None) -> int: ...

    def finish_attempt(self, attempt_id: int, outcome: str, retryable: bool, detail: str,
                       now: float | None = None) -> None: ...

    def interrupt_attempt(self, attempt_id: int, detail: str, now: float | None = None) -> None:
        """The attempt's process died mid-flight: its outcome is ``interrupted``."""

    def record_step(self, run_id: int, step: int, step_action: str, kind: str, outcome: str,
                    command: Any, detail: str, now: float | None = None) -> None:
        """An attempt decided without running anything (cooldown, refusal, dry run)."""

    def progress(self, run_id: int, step: int, outcomes: list[dict[str, Any]],
                 now: float | None = None) -> None:
        """A step finished: remember its outcome and move on (the run stays running)."""

    def requeue(self, run_id: int, step: int, attempt: int, next_at: float, reason: str,
                now: float | None = None) -> None: ...

    def finish(self, run_id: int, status: str, reason: str, outcomes: list[dict[str, Any]],
               now: float | None = None) -> None: ...

    def add_run(self, action: str, reason: str, incident_id: int | None, parent_run_id: int | None,
                dry_run: bool = False, status: str = QUEUED, priority: int = PAGE,
                now: float | None = None) -> int: ...

    def claim_cooldown(self, key: str, action: str, run_id: int, seconds: float,
                       now: float | None = None) -> dict[str, Any] | None:
        """Start the cooldown for ``key``; returns the holder when another run holds it."""

    def cooldown(self, key: str, now: float | None = None) -> dict[str, Any] | None: ...

    # -- reading
    def queue_depth(self) -> int: ...

    def needs_review(self) -> int: ...

    def counts(self) -> dict[str, int]:
        """Rows per table, and ``runs_<status>`` per run status."""

    def actions(self, action: str | None = None, status: str | None = None,
                endpoint: str | None = None, since: float | None = None,
                incident: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The audit trail: runs, newest first, each with its incident and every attempt."""

    def incidents(self, limit: int = 100, merged: bool = False) -> list[dict[str, Any]]:
        """Incidents, newest first; firings coalesced into another are left out unless ``merged``."""

    # -- people's decisions (review.py)
    def failed_runs(self) -> list[dict[str, Any]]:
        """Runs that ended failed/partial/refused/needs_review with no decision since."""

    def awaiting_review(self, page_actions: Collection[str]) -> list[int]:
        """Incidents whose action is a page and that nobody has decided on."""

    def incident(self, incident_id: int) -> dict[str, Any] | None: ...

    def decisions(self, incident_id: int | None = None, limit: int = 500) -> list[dict[str, Any]]: ...

    def decide(self, incident_id: int, decision: str, operator: str, note: str, via: str,
               action: str | None = None, priority: int = 1, dry_run: bool = False,
               after: int | None = None, now: float | None = None) -> dict[str, Any]:
        """Record a decision (and queue ``action``) in one transaction; raises review.Stale."""

    # -- housekeeping
    def prune(self, before: float, keep: int = 0, batch: int = 2000) -> int:
        """Delete repeat deliveries received before ``before`` or beyond the newest ``keep``;
        incidents, runs and the notifications that opened incidents are kept."""

    def start_background(self, retention: float, keep: int = 0) -> None:
        """Start the housekeeping threads (pruning, and for SQLite checkpoints)."""

    def close(self) -> None: ...
