"""The durable record behind an interface: ``open_store(db)`` picks the backend.

A file path opens SQLite (embedded, one webhook per file); a ``postgresql://`` URL opens
PostgreSQL (any number of webhook replicas share it).
"""

from __future__ import annotations

from .base import (
    CHANGE,
    COOLDOWN,
    DRY_RUN,
    EMERGENCY,
    FAILED,
    NEEDS_REVIEW,
    PAGE,
    PARTIAL,
    QUEUED,
    REFUSED,
    ROLLBACK,
    RUN_STATUSES,
    RUNNING,
    SUCCEEDED,
    UNKNOWN_ACTION,
    Recorded,
    RecordedAlert,
    Run,
    Store,
    StoreLocked,
    StoreUnavailable,
)

__all__ = [
    "CHANGE", "COOLDOWN", "DRY_RUN", "EMERGENCY", "FAILED", "NEEDS_REVIEW", "PAGE", "PARTIAL", "QUEUED",
    "REFUSED", "ROLLBACK", "RUN_STATUSES", "RUNNING", "SUCCEEDED", "UNKNOWN_ACTION", "Recorded",
    "RecordedAlert", "Run", "Store", "StoreLocked", "StoreUnavailable", "is_postgres_url", "open_store",
]


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def open_store(db: str, exclusive: bool = True) -> Store:
    """The store for ``db``: a ``postgresql://`` URL, or a SQLite file path.

    Raises StoreUnavailable when PostgreSQL cannot be reached, StoreLocked when another
    webhook holds the SQLite file."""
    if is_postgres_url(db):
        from .postgres import PostgresStore

        return PostgresStore(db)
    from .sqlite import SQLiteStore

    return SQLiteStore(db, exclusive=exclusive)
