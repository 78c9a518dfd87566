"""Prometheus's template functions, as the generated tests expect annotations to read.

The expected annotations of a promtool test are the rendered text, so these reproduce Go's
``humanize``, ``humanizePercentage``, ``humanizeDuration`` and ``printf "%.0f"`` exactly.
"""

from __future__ import annotations

import math


def _g4(v: float) -> str:
    """Go's ``%.4g``."""
    text = f"{v:.4g}"
    if "e" in text:
        mant, exp = text.split("e")
        sign, digits = exp[0], exp[1:].lstrip("0")
        text = f"{mant}e{sign}{digits.rjust(2, '0')}"
    return text


def humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return _g4(v) + prefix
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return _g4(v) + prefix


def humanize_percentage(v: float) -> str:
    return _g4(v * 100) + "%"


def humanize_duration(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return f"{_g4(v)}s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        seconds, minutes = int(v) % 60, int(v) // 60 % 60
        hours, days = int(v) // 3600 % 24, int(v) // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g4(v)}{prefix}s"


# template pipeline -> Python; the keys are what a unit's value_format may be
FORMATTERS = {
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
    "humanize": humanize,
    'printf "%.0f"': lambda v: f"{round(v):d}",
}


def value_placeholder(fmt: str) -> str:
    """The annotation text that shows an alert's value: ``{{ $value | humanize }}``."""
    return "{{ $value | " + fmt + " }}"


def stable(fmt: str, value: float) -> bool:
    """True when float noise in Prometheus's arithmetic cannot change the formatted value."""
    f = FORMATTERS[fmt]
    return f(value * (1 - 1e-9)) == f(value) == f(value * (1 + 1e-9))


def expand(text: str, labels: dict[str, str], value: float, fmt: str) -> str:
    """An annotation as Prometheus renders it for an alert with these labels and value."""
    text = text.replace(value_placeholder(fmt), FORMATTERS[fmt](value))
    for k, v in labels.items():
        text = text.replace("{{ $labels." + k + " }}", v)
    return text
