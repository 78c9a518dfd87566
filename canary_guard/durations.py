"""Durations exactly as Prometheus parses them ("30s", "5m", "1h30m"), as seconds, and back.

Prometheus (``model.ParseDuration``) reads ``[Ny][Nw][Nd][Nh][Nm][Ns][Nms]``: units from the
largest to the smallest, each at most once, whole numbers only, or a bare ``0``; nothing else,
not even surrounding spaces; at most about 292 years. A plan that says ``1.5m`` or ``5s1m``
would mean one thing here and be refused by Prometheus, so both are refused here too, with
what to write instead. Plain numbers (YAML ``15``, ``0.5``) are seconds: that is how
``Plan.to_yaml`` writes durations back.
"""

from __future__ import annotations

import math
import re

# unit -> milliseconds, largest first: the only order Prometheus accepts
UNITS_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000,
            "m": 60_000, "s": 1000, "ms": 1}
_PROMETHEUS = re.compile("".join(rf"(?:([0-9]+){u})?" for u in UNITS_MS))
_MAX_NS = (1 << 63) - 1  # Go's time.Duration
_TOKEN = re.compile(r"([0-9]*\.?[0-9]+)([A-Za-zµ]*)")
EXAMPLES = "such as 30s, 5m or 1h30m"


def parse_duration(value: str | int | float) -> float:
    """Seconds for a Prometheus duration string, or for a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration {EXAMPLES}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number of seconds or a duration {EXAMPLES}")
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    return _milliseconds(str(value)) / 1000


def _milliseconds(text: str) -> int:
    if text == "0":  # the one unitless value Prometheus allows
        return 0
    match = _PROMETHEUS.fullmatch(text) if text else None
    if match is None:
        raise ValueError(_why(text))
    total_ns = 0
    for digits, mult in zip(match.groups(), UNITS_MS.values(), strict=True):
        if digits is None:
            continue
        n = int(digits)
        # model.ParseDuration's overflow checks: each part, then the running sum, in int64 ns
        if n > _MAX_NS // (mult * 1_000_000) or total_ns + n * mult * 1_000_000 > _MAX_NS:
            raise ValueError(f"{text!r} is out of range: Prometheus durations end at about 292 years")
        total_ns += n * mult * 1_000_000
    return total_ns // 1_000_000


def _why(text: str) -> str:
    """What is wrong with a duration Prometheus refuses, and what to write instead."""
    head = f"{text!r} is not a duration {EXAMPLES}"
    if not text:
        return f"must be a duration {EXAMPLES}"
    if text != text.strip():
        return f"{head}: remove the spaces around it"
    if text.startswith("-"):
        return f"{head}: must not be negative"
    tokens = _TOKEN.findall(text)
    if "".join(n + u for n, u in tokens) != text:
        return f"{head} (a whole number and a unit: ms, s, m, h, d, w, y; e.g. 5m, or 1h30m)"
    units = [u for _, u in tokens]
    unknown = [u for u in units if u not in UNITS_MS]
    if unknown:
        bare = "" in unknown
        return f"{head}: " + ("every number needs a unit (15s, not 15)" if bare else
                             f"unknown unit {unknown[0]!r} (units: ms, s, m, h, d, w, y)")
    exact = sum(float(n) * UNITS_MS[u] for n, u in tokens)
    suggestion = format_duration(exact / 1000) if exact == int(exact) and exact > 0 else None
    hint = f"; write {suggestion}" if suggestion else ""
    if any("." in n for n, _ in tokens):
        return f"{head}: Prometheus takes whole numbers only{hint}"
    order = list(UNITS_MS)
    if len(set(units)) != len(units):
        return f"{head}: each unit may appear once{hint}"
    if units != sorted(units, key=order.index):
        return f"{head}: units go from the largest to the smallest{hint}"
    return head


def format_duration(seconds: float) -> str:
    """Seconds as Prometheus writes a duration (``model.Duration.String``): 90 -> ``1m30s``.

    Whole milliseconds; years and weeks only when they divide the whole (``90d``, not
    ``12w6d``).
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {seconds!r} seconds")
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in UNITS_MS.items():
        if unit in ("y", "w") and ms % size:
            continue
        if ms >= size:
            count, ms = divmod(ms, size)
            out.append(f"{count}{unit}")
    return "".join(out)


def human_seconds(seconds: float) -> str:
    """A measured latency for people: ``12ms``, ``450ms``, ``1.4s``."""
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.3g}s"


def parse_seconds_or_duration(text: str) -> float:
    """For command-line flags: bare seconds ("0.5", "15") or a Prometheus duration ("500ms")."""
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?|\.[0-9]+", text.strip()):
        return float(text)
    return parse_duration(text.strip())
