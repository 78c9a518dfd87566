"""The durable record behind an interface: ``open_store(db)`` picks the backend.

A file path opens SQLite (embedded, one webhook per file); a ``postgresql://`` URL opens
PostgreSQL (any number of webhook replicas share it).
"""

from __future__ import annotations

from .base import (
    COOLDOWN,
    DRY_RUN,
    FAILED,
    NEEDS_REVIEW,
    PARTIAL,
    QUEUED,
    REFUSED,
    RUN_STATUSES,
    RUNNING,
    SUCCEEDED,
    UNKNOWN_ACTION,
    Recorded,
    RecordedAlert,
    Run,
    Store,
    StoreLocked,
)

__all__ = [
    "COOLDOWN", "DRY_RUN", "FAILED", "NEEDS_REVIEW", "PARTIAL", "QUEUED", "REFUSED", "RUN_STATUSES",
    "RUNNING", "SUCCEEDED", "UNKNOWN_ACTION", "Recorded", "RecordedAlert", "Run", "Store", "StoreLocked",
    "is_postgres_url", "open_store",
]


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def open_store(db: str, exclusive: bool = True) -> Store:
    """The store for ``db``: a ``postgresql://`` URL, or a SQLite file path."""
    if is_postgres_url(db):
        raise ValueError("--db: PostgreSQL is not supported yet")
    from .sqlite import SQLiteStore

    return SQLiteStore(db, exclusive=exclusive)
