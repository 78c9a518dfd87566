"""The fault model: what ``POST /-/faults`` accepts and which fault hits a given request.

A fault targets one endpoint (by plan name) or every endpoint (``"*"``) and applies to a
share ``rate`` of its requests, drawn from one seedable random generator so that a test
with ``--seed`` sees the same sequence every run. When several faults match a request the
newest one is tried first; at most one fault applies per request.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from canary_guard.contract import PII_KINDS

MODES: dict[str, str] = {
    "error": "HTTP 500 (or status_code 400..599) with an error body",
    "slow": "wait latency_ms, then answer normally",
    "null": "HTTP 200 with the body null",
    "null_field": "HTTP 200 with one required field (or `field`) null",
    "pii": "HTTP 200 with an unredacted e-mail, SSN, phone and card number (or only `kind`)",
    "hang": "never answer; the connection stays open until the client gives up",
    "reset": "drop the TCP connection (RST) without a response",
    "invalid_json": "HTTP 200, Content-Type application/json, a body that is not JSON",
    "huge": "HTTP 200 with a JSON body of size_bytes (default 8 MiB), streamed",
    "rate_limited": "HTTP 429 with Retry-After (retry_after seconds, default 60)",
}


DEFAULT_HUGE_BYTES = 8 << 20
MAX_HUGE_BYTES = 1 << 30
MAX_LATENCY_MS = 3_600_000

# Fields a fault may carry, beyond endpoint/mode/rate/latency_ms, and the modes they suit.
_OPTIONS = {
    "kind": ("pii",),
    "field": ("null_field",),
    "status_code": ("error",),
    "size_bytes": ("huge",),
    "retry_after": ("rate_limited",),
}
_KNOWN = {"endpoint", "mode", "rate", "latency_ms", "count", *_OPTIONS}


class FaultError(ValueError):
    """A fault request that cannot be applied; the message says what to fix."""


@dataclass
class Fault:
    id: str
    endpoint: str  # an endpoint name or "*"
    mode: str
    rate: float = 1.0
    latency_ms: float = 0.0  # waited before the fault takes effect (the whole point of "slow")
    count: int | None = None  # apply this many times, then retire; None: until cleared
    kind: str | None = None
    field: str | None = None
    status_code: int = 500
    size_bytes: int = DEFAULT_HUGE_BYTES
    retry_after: int = 60
    created: float = dataclass_field(default_factory=time.time)
    applied: int = 0

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in ("*", endpoint)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.applied >= self.count

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "endpoint": self.endpoint,
            "mode": self.mode,
            "rate": self.rate,
            "latency_ms": self.latency_ms,
        }
        if self.count is not None:
            out["count"] = self.count
        if self.mode == "pii":
            out["kind"] = self.kind or "all"
        elif self.mode == "null_field" and self.field:
            out["field"] = self.field
        elif self.mode == "error":
            out["status_code"] = self.status_code
        elif self.mode == "huge":
            out["size_bytes"] = self.size_bytes
        elif self.mode == "rate_limited":
            out["retry_after"] = self.retry_after
        out["applied"] = self.applied
        out["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        return out


def _number(data: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{key}: must be a number between {low:g} and {high:g}, got {value!r}")
    if not low <= value <= high:
        raise FaultError(f"{key}: {value!r} is out of range, must be between {low:g} and {high:g}")
    return float(value)


def _integer(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultError(f"{key}: must be a whole number between {low} and {high}, got {value!r}")
    if not low <= value <= high:
        raise FaultError(f"{key}: {value!r} is out of range, must be between {low} and {high}")
    return value


class FaultTable:
    """The active faults of one sandbox, and the random draw that decides who is hit."""

    def __init__(self, endpoints: dict[str, list[str]], seed: int | None = None):
        # endpoint name -> its required fields (to validate `field` of null_field faults)
        self.endpoints = endpoints
        self.rng = random.Random(seed)
        self.faults: list[Fault] = []
        self._ids = itertools.count(1)

    def parse(self, data: Any) -> Fault:
        """Validate a ``POST /-/faults`` body into a Fault (not yet added)."""
        endpoint, mode = self._target(data)
        fault = Fault(
            id=f"f{next(self._ids)}",
            endpoint=endpoint,
            mode=mode,
            rate=_number(data, "rate", 1.0, 0.0, 1.0),
            latency_ms=_number(data, "latency_ms", 0.0, 0.0, MAX_LATENCY_MS),
        )
        if mode == "slow" and fault.latency_ms <= 0:
            raise FaultError("latency_ms: mode slow needs latency_ms > 0 (milliseconds to add)")
        if "count" in data:
            fault.count = _integer(data, "count", 1, 1, 1_000_000_000)
        if mode == "pii" and "kind" in data:
            if data["kind"] not in PII_KINDS:
                raise FaultError(f"kind: {data['kind']!r} is not a PII kind (kinds: {', '.join(PII_KINDS)})")
            fault.kind = data["kind"]
        if mode == "null_field" and "field" in data:
            fault.field = self._field(endpoint, data["field"])
        if mode == "error":
            fault.status_code = _integer(data, "status_code", 500, 400, 599)
        if mode == "huge":
            fault.size_bytes = _integer(data, "size_bytes", DEFAULT_HUGE_BYTES, 1, MAX_HUGE_BYTES)
        if mode == "rate_limited":
            fault.retry_after = _integer(data, "retry_after", 60, 0, 86_400)
        return fault

    def _target(self, data: Any) -> tuple[str, str]:
        """The body's endpoint and mode, once its fields are known and fit the mode."""
        if not isinstance(data, dict):
            raise FaultError('body: must be a JSON object like {"endpoint": "*", "mode": "error"}')
        unknown = sorted(set(data) - _KNOWN)
        if unknown:
            raise FaultError(f"{unknown[0]}: unknown field (known: {', '.join(sorted(_KNOWN))})")
        endpoint = data.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise FaultError('endpoint: required, an endpoint name or "*"')
        if endpoint != "*" and endpoint not in self.endpoints:
            raise FaultError(
                f"endpoint: unknown endpoint {endpoint!r} (known: {', '.join(self.endpoints)}, or \"*\")"
            )
        mode = data.get("mode")
        if mode not in MODES:
            shown = repr(mode) if mode is not None else "missing"
            raise FaultError(f"mode: {shown} is not a fault mode (modes: {', '.join(MODES)})")
        for key, modes in _OPTIONS.items():
            if key in data and mode not in modes:
                raise FaultError(f"{key}: only applies to mode {' or '.join(modes)}, not {mode}")
        return endpoint, mode

    def _field(self, endpoint: str, name: Any) -> str:
        """A null_field fault's field: one every targeted endpoint's response requires."""
        if not isinstance(name, str) or not name:
            raise FaultError("field: must be the name of a response field")
        targets = self.endpoints if endpoint == "*" else {endpoint: self.endpoints[endpoint]}
        missing = [n for n, fields in targets.items() if name not in fields]
        if missing:
            raise FaultError(
                f"field: {name!r} is not a required field of {', '.join(missing)}"
            )
        return name

    def add(self, data: Any) -> Fault:
        fault = self.parse(data)
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: str) -> Fault | None:
        for fault in self.faults:
            if fault.id == fault_id:
                self.faults.remove(fault)
                return fault
        return None

    def clear(self) -> int:
        n = len(self.faults)
        self.faults.clear()
        return n

    def pick(self, endpoint: str) -> Fault | None:
        """The fault that hits this request, if any (newest first, each with its own rate)."""
        for fault in reversed(self.faults):
            if not fault.matches(endpoint) or fault.exhausted:
                continue
            # rate 1 draws nothing, so seeded sequences depend only on the partial faults
            if fault.rate >= 1.0 or (fault.rate > 0.0 and self.rng.random() < fault.rate):
                fault.applied += 1
                if fault.exhausted:
                    self.faults.remove(fault)
                return fault
        return None
