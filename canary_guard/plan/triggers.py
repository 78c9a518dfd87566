"""Rollback triggers: each becomes one alerting rule (plus the recording rules it needs)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from canary_guard.durations import parse_duration

from .base import ALERT_RE, Model, Name, PositiveSeconds, Seconds
from .promql import check_alert_expr

TriggerKind = Literal[
    "error_rate",
    "latency_avg",
    "availability",
    "null_streak",
    "pii_exposure",
    "probes_missing",
    "custom",
]
TRIGGER_KINDS: tuple[str, ...] = get_args(TriggerKind)


class Trigger(Model):
    """A rollback trigger: becomes one alerting rule."""

    name: Name
    kind: TriggerKind
    alert: str = Field(pattern=ALERT_RE)
    action: Name
    severity: Literal["critical", "warning", "info", "page"] = "critical"
    # error_rate/availability: a ratio; latency_avg: seconds (or a duration); null_streak:
    # a count (fires when the streak is greater); pii_exposure: exposures in the window.
    threshold: float | None = None
    window: PositiveSeconds | None = None
    for_: Seconds = Field(default=0.0, alias="for")
    min_probes: int | None = Field(default=None, ge=1)  # None: derived from threshold and rate
    # source traffic: requests the window must hold before a ratio may fire; None: derived
    # like min_probes (ceil(1 / margin))
    min_requests: int | None = Field(default=None, ge=1)
    expr: str | None = None  # custom triggers: raw PromQL
    tracks: list[Name] | None = None  # None: the plan's guarded tracks
    # The track this trigger compares with: it rolls back only when the guarded track breaches
    # and this one does not (a shared cause is paged, not rolled back). "auto": the plan's
    # baseline (analysis.baseline, else the first target that is not guarded); "none": judge
    # the guarded track alone (e.g. PII, always an emergency); or a target's name.
    baseline: Literal["auto", "none"] | Name = "auto"
    # Which evidence the trigger judges: the exporter's probes, or the service's own request
    # metrics (the plan's traffic section).
    source: Literal["probe", "traffic"] = "probe"
    summary: str | None = None
    description: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        return v

    @field_validator("expr")
    @classmethod
    def _expr(cls, v: str | None) -> str | None:
        return None if v is None else check_alert_expr(v)

    @model_validator(mode="after")
    def _by_kind(self) -> Trigger:
        t, kind = self.threshold, self.kind
        if kind == "custom":
            if not self.expr:
                raise ValueError("custom triggers need expr (PromQL)")
            return self
        if self.expr:
            raise ValueError(f"expr is only for custom triggers, not {kind}")
        if kind in ("error_rate", "availability"):
            if t is None:
                raise ValueError("threshold: required (a ratio between 0 and 1)")
            if not 0 < t < 1:
                side = "never fires" if (t >= 1) == (kind == "error_rate") else "always fires"
                raise ValueError(
                    f"threshold: {t} is out of range (0, 1); this trigger {side}"
                )
        elif kind == "latency_avg":
            if t is None or t <= 0:
                raise ValueError("threshold: required, a latency in seconds greater than 0")
        elif kind == "null_streak":
            if t is None or t < 0 or t != int(t):
                raise ValueError("threshold: required, a whole number of responses >= 0")
        elif kind == "pii_exposure":
            if t is not None and t < 0:
                raise ValueError("threshold: must be >= 0 (0 fires on any exposure)")
        return self
