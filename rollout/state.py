"""The rollout's durable state and audit trail, in one directory.

``state.json`` is the whole state, replaced atomically (write a temporary file, fsync, rename,
fsync the directory) at every step, so that after a crash the file holds either the step
before or the step after, never half of one. ``audit.jsonl`` gets one JSON line per step,
flushed and fsynced before the step's effect. ``lock`` is held (flock) by the one process that
runs this rollout; the kernel releases it when that process dies, even by ``kill -9``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE = "state.json"
AUDIT = "audit.jsonl"
LOCK = "lock"
FORMAT = 1

APPLY, WAIT = "apply", "wait"  # steps within a phase: applying its weight, then running it
TERMINAL = ("completed", "rolled_back", "stopped", "aborted")


class StateError(Exception):
    """The state directory cannot be used (locked by another process, unreadable, another plan)."""


@dataclass
class State:
    plan: str
    digest: str  # of the phases and the rollout section: a restart with other phases is refused
    started: float
    status: str = "running"
    phase: int = 0  # index into plan.phases
    step: str = APPLY
    weight: float | None = None  # the last weight applied successfully (None: never applied)
    effective: float | None = None  # what the canary really gets (replica ratios round)
    phase_started: float | None = None  # when the current phase's weight was applied
    held_since: float | None = None  # the gate has held this phase since
    next_gate: float | None = None
    gate_runs: int = 0  # in this phase
    last_decision: dict[str, Any] | None = None  # {decision, at, phase, reasons}
    pause_reason: str | None = None
    approved: list[int] = field(default_factory=list)  # phase indexes a person approved
    rollback: dict[str, Any] | None = None  # {source, reason, stage, detail}
    time_scale: float = 1.0
    updated: float = 0.0
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        if data.get("format") != FORMAT:
            raise StateError(f"state format {data.get('format')!r} is not {FORMAT}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class StateDir:
    """One rollout's directory: its state, its audit trail and its lock."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock_fd: int | None = None

    # -- the lock -------------------------------------------------------------------------------

    def lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = (self.path / LOCK).read_text().strip() or "another process"
            raise StateError(f"{self.path} is in use by {owner}: one rollout per state directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- state ----------------------------------------------------------------------------------

    def load(self) -> State | None:
        try:
            text = (self.path / STATE).read_text()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StateError(f"cannot read {self.path / STATE}: {err.strerror}") from None
        try:
            return State.from_dict(json.loads(text))
        except (ValueError, TypeError) as err:
            raise StateError(f"{self.path / STATE} is not a rollout state: {err}") from None

    def save(self, state: State) -> None:
        state.updated = time.time()
        data = json.dumps(state.to_dict(), indent=2, sort_keys=True).encode()
        tmp = self.path / f".{STATE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path / STATE)
        _fsync_dir(self.path)

    # -- audit ----------------------------------------------------------------------------------

    def audit(self, event: str, **fields: Any) -> dict[str, Any]:
        entry = {"ts": round(time.time(), 3), "event": event, **fields}
        line = json.dumps(entry, sort_keys=False, default=str) + "\n"
        with open(self.path / AUDIT, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return entry

    def audit_trail(self, limit: int | None = None) -> list[dict[str, Any]]:
        try:
            lines = (self.path / AUDIT).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-limit:] if limit else lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash mid-write: the next one is whole
        return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
