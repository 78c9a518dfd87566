"""The rule model: what the generator produces and every output format renders.

Like sloth's model, these dataclasses sit between the plan and the files: the trigger units
(``kinds/``) and the phase gates build them, ``render.py`` only lays them out, so the rule file,
the PrometheusRule and the promtool tests cannot disagree about a name or an expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: float
    labels: dict[str, str]
    annotations: dict[str, str]
    # seconds the alert keeps firing after its condition clears (Prometheus >= 2.42); 0: off
    keep_firing_for: float = 0.0


@dataclass(frozen=True)
class RuleGroup:
    name: str
    interval: float
    rules: Sequence[RecordingRule | AlertRule]
