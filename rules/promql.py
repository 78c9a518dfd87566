"""Small pieces of PromQL and of the text around it: numbers, escaped selectors, readable values.

Every plan string that reaches PromQL goes through :func:`string` (a label value) or
:func:`regex_of` (a regex matcher's alternatives), never an f-string alone.
"""

from __future__ import annotations

from canary_guard import contract
from canary_guard.plan import Plan

# feature-flag 503s say nothing about the release: ratios leave them out
COUNTED = f'{contract.OUTCOME}!="{contract.DISABLED}"'



def absent_for(plan: Plan) -> float:
    """How long an ``absent(...)`` alert waits: long enough for a Prometheus that just started.

    Prometheus evaluates its rules from its start, while its service discovery hands the scrape
    targets over up to 5 s later and the first scrape comes up to an interval after that (5.5 s
    measured at 0.5 s scrapes; more on a busy machine): with empty storage every series is
    absent until then. Four scrapes, and at least a minute, so that a fresh Prometheus never pages.
    """
    return max(4 * plan.prometheus.scrape_interval, 60.0)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_REGEX_META = set("\\.+*?()|[]{}^$")


def string(value: str) -> str:
    """A PromQL double-quoted string literal (Go's escapes) holding exactly ``value``."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def regex_of(values: list[str]) -> str:
    """A regex (RE2) that matches exactly these values, like Go's regexp.QuoteMeta joined by |."""
    return "|".join("".join("\\" + c if c in _REGEX_META else c for c in v) for v in values)


def labels(**pairs: str) -> str:
    """``{a="x",b="y"}``, values escaped."""
    return "{" + ",".join(f"{k}={string(v)}" for k, v in pairs.items()) + "}"


def selector(metric: str, **pairs: str) -> str:
    """``metric{a="x",b="y"}``, values escaped: a series for promtool, or an instant selector."""
    return metric + labels(**pairs)


def num(value: float) -> str:
    """A PromQL number literal without float noise (0.02, not 0.020000000000000004)."""
    return f"{value:.10g}"


def tracks_matcher(tracks: list[str]) -> str:
    """``track=~"canary|stable"``: the label matcher for a list of plan track names."""
    return f"{contract.TRACK}=~{string(regex_of(tracks))}"


def pct(value: float) -> str:
    """A ratio as a percentage for summaries: 0.02 -> ``2%``."""
    return f"{value * 100:.10g}%"


def seconds_text(value: float) -> str:
    """A latency for summaries: 0.4 -> ``400ms``, 1.5 -> ``1.5s``."""
    return f"{value * 1000:.10g}ms" if value < 1 else f"{value:.10g}s"
