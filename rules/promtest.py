"""The ``promtool test rules`` model: test cases, input series and their notation.

Trigger units and the phase gates build these; ``render.py`` writes them as
``canary-guard.rules.test.yml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction


@dataclass
class Series:
    selector: str
    values: str


@dataclass
class AlertCheck:
    eval_time: float
    alertname: str
    exp_alerts: list[dict]  # {"exp_labels": {...}, "exp_annotations": {...}}


@dataclass
class ExprCheck:
    eval_time: float
    expr: str
    exp_samples: list[dict]  # {"labels": 'name{a="b"}', "value": float}


@dataclass
class UnitTest:
    name: str
    interval: float
    input_series: list[Series] = field(default_factory=list)
    alert_checks: list[AlertCheck] = field(default_factory=list)
    expr_checks: list[ExprCheck] = field(default_factory=list)


def number(v: float) -> str:
    """A sample value as input series write it (1, not 1.0)."""
    if v == int(v):
        return str(int(v))
    return repr(float(v))


def _step(values: Sequence[float | None], i: int) -> Fraction | None:
    """values[i + 1] - values[i], exactly; None past the end or next to a gap."""
    if i + 1 >= len(values):
        return None
    a, b = values[i], values[i + 1]
    return None if a is None or b is None else Fraction(b) - Fraction(a)


def encode(values: Sequence[float | None]) -> str:
    """promtool's series notation: runs with a constant step become ``a+bxn``, gaps ``_``."""
    out: list[str] = []
    i = 0
    while i < len(values):
        v = values[i]
        if v is None:
            j = i
            while j + 1 < len(values) and values[j + 1] is None:
                j += 1
            out.append("_" if j == i else f"_x{j - i + 1}")
            i = j + 1
            continue
        j = i
        step = _step(values, i)
        if step is not None:
            while _step(values, j) == step:
                j += 1
            if j - i >= 2:
                sign = "+" if step >= 0 else "-"
                out.append(f"{number(v)}{sign}{number(abs(float(step)))}x{j - i}")
                i = j + 1
                continue
        out.append(number(v))
        i += 1
    return " ".join(out)


def cumulative(increments: Sequence[float]) -> list[float]:
    """A counter's samples from its increments, starting at 0 (exact: no float drift)."""
    out, total = [0.0], Fraction(0)
    for inc in increments:
        total += Fraction(inc)
        out.append(float(total))
    return out


