"""Prometheus-style durations ("30s", "5m", "1h30m") as seconds, and back."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(value: str | int | float) -> float:
    """Return seconds for a Prometheus duration string, or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    text = str(value).strip()
    if not text:
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds as the shortest Prometheus duration string ("90" -> "1m30s")."""
    if seconds < 0:
        raise ValueError("negative duration")
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            count, ms = divmod(ms, size)
            out.append(f"{count}{unit}")
    return "".join(out)


def human_seconds(seconds: float) -> str:
    """A measured latency for people: ``12ms``, ``450ms``, ``1.4s``."""
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.3g}s"
