"""What every store backend provides: the statuses, the records it returns, the Store protocol.

A store is the webhook's durable record: notifications, their alerts, the incidents they open
(unique on fingerprint + startsAt), the action runs those queue, every attempt, and the
cooldowns. Two backends implement it: SQLite (``sqlite.py``, embedded, one process) and
PostgreSQL (``postgres.py``, any number of replicas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..payload import Notification

# Run statuses. Terminal ones never change again.
QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, PARTIAL = "succeeded", "failed", "partial"
REFUSED, COOLDOWN = "refused", "cooldown"
NEEDS_REVIEW, UNKNOWN_ACTION, DRY_RUN = "needs_review", "unknown_action", "dry_run"
RUN_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, PARTIAL, REFUSED, COOLDOWN, NEEDS_REVIEW,
                UNKNOWN_ACTION, DRY_RUN)

INTERRUPTED_REASON = ("the webhook stopped while this action was running; its effect is unknown: "
                      "check the deployment and the service, then act by hand")


@dataclass(frozen=True, slots=True)
class RecordedAlert:
    incident_id: int
    status: str
    action: str | None
    new: bool
    duplicate: bool
    run_id: int | None
    run_status: str | None


@dataclass(frozen=True, slots=True)
class Recorded:
    notification_id: int
    alerts: list[RecordedAlert]


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


class StoreLocked(RuntimeError):
    """The database is in use by another webhook (SQLite: one webhook per file)."""


def initial_run(action: str | None, known: dict[str, Any] | set[str]) -> tuple[str, str]:
    """The status and reason of a new firing incident's run: queued, or why not."""
    if not action:
        return UNKNOWN_ACTION, "the alert has no action label: nothing to run"
    if action not in known:
        names = ", ".join(sorted(known)) or "none"
        return UNKNOWN_ACTION, f"no action named {action!r} in the plan (defined: {names}); not run"
    return QUEUED, ""


class Store(Protocol):
    """The durable record. Every method is safe to call from any thread."""

    # -- the request path
    def record(self, n: Notification, body: str, known_actions: dict[str, Any] | set[str],
               dry_run: bool = False, now: float | None = None) -> Recorded:
        """Record a notification with its alerts, open incidents and queue their runs, in one
        transaction committed before this returns."""

    # -- the worker
    def recover(self, now: float | None = None) -> list[int]:
        """After a restart: runs that were mid-flight are marked needs_review; their ids."""

    def claim(self, now: float | None = None) -> Run | None:
        """Take the next due queued run (marking it running), or None."""

    def run(self, run_id: int) -> Run | None: ...

    def next_due(self) -> float | None:
        """When the next queued run is due (unix seconds), or None."""

    def start_attempt(self, run_id: int, step: int, step_action: str, kind: str, attempt: int,
                      command: Any, now: float | None = None) -> int: ...

    def finish_attempt(self, attempt_id: int, outcome: str, retryable: bool, detail: str,
                       now: float | None = None) -> None: ...

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
                dry_run: bool = False, status: str = QUEUED, now: float | None = None) -> int: ...

    def claim_cooldown(self, key: str, action: str, run_id: int, seconds: float,
                       now: float | None = None) -> dict[str, Any] | None:
        """Start the cooldown for ``key``; returns the holder when another run holds it."""

    def cooldown(self, key: str, now: float | None = None) -> dict[str, Any] | None: ...

    # -- reading
    def queue_depth(self) -> int: ...

    def counts(self) -> dict[str, int]:
        """Rows per table, and ``runs_<status>`` per run status."""

    def actions(self, action: str | None = None, status: str | None = None,
                endpoint: str | None = None, since: float | None = None,
                incident: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The audit trail: runs, newest first, each with its incident and every attempt."""

    def incidents(self, limit: int = 100) -> list[dict[str, Any]]: ...

    # -- housekeeping
    def prune(self, before: float) -> int:
        """Delete repeat deliveries received before ``before``; incidents and runs are kept."""

    def start_background(self, retention: float) -> None:
        """Start the housekeeping threads (pruning, and for SQLite checkpoints)."""

    def close(self) -> None: ...
