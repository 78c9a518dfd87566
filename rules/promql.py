"""Small pieces of PromQL and of the text around it: numbers, selectors, human-readable values."""

from __future__ import annotations

from canary_guard import contract

# feature-flag 503s say nothing about the release: ratios leave them out
COUNTED = f'{contract.OUTCOME}!="{contract.DISABLED}"'


def num(value: float) -> str:
    """A PromQL number literal without float noise (0.02, not 0.020000000000000004)."""
    return f"{value:.10g}"


def tracks_matcher(tracks: list[str]) -> str:
    """``track=~"canary|stable"``: the label matcher for a list of plan track names."""
    return f'{contract.TRACK}=~"{"|".join(tracks)}"'


def pct(value: float) -> str:
    """A ratio as a percentage for summaries: 0.02 -> ``2%``."""
    return f"{value * 100:.10g}%"


def seconds_text(value: float) -> str:
    """A latency for summaries: 0.4 -> ``400ms``, 1.5 -> ``1.5s``."""
    return f"{value * 1000:.10g}ms" if value < 1 else f"{value:.10g}s"
