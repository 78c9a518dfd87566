"""Annotations are Go templates: placeholders, escaping plan text, and rendering them in Python.

Prometheus expands ``{{ ... }}`` in every annotation, and a template can run queries, so plan
text (a trigger's summary and description, the runbook URL, the job) is escaped before it
becomes part of one: :func:`plan_text` keeps the placeholders a plan may use (``{{ $value }}``,
``{{ $value | humanize }}`` and the other humanize functions, ``{{ $labels.NAME }}``) and turns
every other ``{{`` into text. The generated promtool tests expect annotations as Prometheus
renders them, so :func:`expand` reproduces that rendering, with Go's ``humanize``,
``humanizePercentage``, ``humanizeDuration``, ``printf "%.0f"`` and ``%v`` exactly.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal


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


def go_value(v: float) -> str:
    """Go's ``%v`` of a float64 (what ``{{ $value }}`` prints): shortest digits, e-notation
    below 1e-4 and from 1e6 on (``fmt.Println(1e6)`` prints ``1e+06``)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    sign, digits, exp = Decimal(repr(v)).normalize().as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    point = len(text) + exp  # the decimal point's position within the digits
    x = point - 1  # the exponent in d.ddde±x form
    if x < -4 or x >= 6:
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        out = f"{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    elif point <= 0:
        out = "0." + "0" * -point + text
    elif point >= len(text):
        out = text + "0" * (point - len(text))
    else:
        out = text[:point] + "." + text[point:]
    return ("-" if sign else "") + out


# template pipeline -> Python; the keys are what a unit's value_format may be
FORMATTERS = {
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
    "humanize": humanize,
    'printf "%.0f"': lambda v: f"{round(v):d}",
}
# what plan text may pipe $value through
PLAN_FORMATS = ("humanize", "humanizePercentage", "humanizeDuration")

# the text of a literal "{{": an action that prints the string
OPEN = '{{ "{{" }}'
_PLAN_ACTION = re.compile(
    r"\{\{\s*(?:\$labels\.([A-Za-z_][A-Za-z0-9_]*)|\$value(?:\s*\|\s*(" + "|".join(PLAN_FORMATS)
    + r"))?)\s*\}\}"
)
# every action the generator writes: placeholders and escaped braces
_ACTION = re.compile(r'\{\{ (?:\$labels\.([A-Za-z_][A-Za-z0-9_]*)|\$value(?: \| ([^}]+))?|"\{\{") \}\}')


def value_placeholder(fmt: str) -> str:
    """The annotation text that shows an alert's value: ``{{ $value | humanize }}``."""
    return "{{ $value | " + fmt + " }}"


def literal(text: str) -> str:
    """Text that a Go template prints exactly as written."""
    return text.replace("{{", OPEN)


def plan_text(text: str) -> str:
    """Plan text for an annotation: its placeholders kept (normalised), anything else literal."""
    out, pos = [], 0
    for m in _PLAN_ACTION.finditer(text):
        out.append(literal(text[pos:m.start()]))
        if m.group(1):
            out.append("{{ $labels." + m.group(1) + " }}")
        else:
            out.append(value_placeholder(m.group(2)) if m.group(2) else "{{ $value }}")
        pos = m.end()
    out.append(literal(text[pos:]))
    return "".join(out)


def stable(fmt: str, value: float) -> bool:
    """True when float noise in Prometheus's arithmetic cannot change the formatted value."""
    f = FORMATTERS[fmt]
    return f(value * (1 - 1e-9)) == f(value) == f(value * (1 + 1e-9))


def expand(text: str, labels: dict[str, str], value: float) -> str:
    """An annotation as Prometheus renders it for an alert with these labels and value."""

    def action(m: re.Match[str]) -> str:
        if m.group(1):
            return labels.get(m.group(1), "")  # Prometheus expands with missingkey=zero
        if m.group(0) == OPEN:
            return "{{"
        return FORMATTERS[m.group(2)](value) if m.group(2) else go_value(value)

    # one pass: text that an action produced is never read as an action again
    return _ACTION.sub(action, text)
