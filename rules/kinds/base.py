"""What every trigger unit is: the interface, and the per-trigger context it works from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from canary_guard import contract
from canary_guard.plan import Plan, Trigger

from .. import names, notify, promql
from ..model import AlertRule, RecordingRule
from ..templating import literal, plan_text, value_placeholder

if TYPE_CHECKING:
    from ..cases import Cases
    from ..promtest import UnitTest

# where an alert fired, as annotations show it
WHERE = "{{ $labels.endpoint }} on {{ $labels.track }}"


class TriggerUnit:
    """One trigger kind: its recording rules, its alert rules and its promtool tests.

    A unit is stateless; every method receives the :class:`Context` of one plan trigger. The
    generator (``spec.py``) and the test builder (``promtests.py``) only ever go through this
    interface, looked up by kind in ``kinds.UNITS``.
    """

    kind: ClassVar[str]
    # the template pipeline that shows the alert's value in its description
    value_format: ClassVar[str] = "humanize"
    # True: the alerts fire only on a breach in the watched tracks' probe data, so the generated
    # tests of other kinds check they stay silent without data and on unguarded tracks
    judges_probes: ClassVar[bool] = True

    def windows(self, ctx: Context) -> list[float]:
        """Ranges that need the shared family of recording rules (``recording.window_rules``)."""
        return [ctx.window]

    def recording_rules(self, ctx: Context) -> list[RecordingRule]:
        """Recording rules of this trigger beyond the shared family (none by default)."""
        return []

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        raise NotImplementedError

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        """promtool test cases that pin this trigger at its boundary (none by default)."""
        return []


@dataclass(frozen=True)
class Context:
    """One trigger of one plan, and what every unit derives from the two."""

    plan: Plan
    trigger: Trigger
    unit: TriggerUnit

    @property
    def window(self) -> float:
        return self.plan.trigger_window(self.trigger)

    @property
    def range(self) -> str:
        """The window as PromQL writes a range: ``18m45s``."""
        return names.w(self.window)

    @property
    def tracks(self) -> list[str]:
        """The tracks this trigger watches (its own ``tracks``, else the guarded ones)."""
        return self.plan.trigger_tracks(self.trigger)

    @property
    def baseline(self) -> str | None:
        """The track this trigger compares with, or None (``Plan.trigger_baseline``)."""
        return self.plan.trigger_baseline(self.trigger)

    @property
    def track_matcher(self) -> str:
        return promql.tracks_matcher(self.tracks)

    @property
    def value(self) -> str:
        """The placeholder that shows the alert's value in an annotation."""
        return value_placeholder(self.unit.value_format)

    @property
    def then(self) -> str:
        return f"Action: {self.trigger.action}."

    @property
    def labels(self) -> dict[str, str]:
        t = self.trigger
        labels = {"severity": t.severity, "trigger": t.name, "action": t.action}
        if t.kind != "custom":  # a custom expression judges whatever it selects
            labels[contract.ALERT_SOURCE] = t.source
        return labels

    @property
    def runbook_url(self) -> str:
        # GitHub turns the heading "## CanaryErrorRateHigh" into the anchor #canaryerrorratehigh
        return literal(f"{self.plan.runbook_url}#{self.trigger.alert.lower()}")

    def alert(self, expr: str, summary: str, description: str, *,
              labels: dict[str, str] | None = None, for_: float | None = None,
              keep_firing_for: float = 0.0) -> AlertRule:
        """An alert rule of this trigger: the plan's summary/description win over the defaults.

        Everything but the plan's text is the unit's own: plan strings inside ``summary`` and
        ``description`` (a job name, ...) must already be passed through ``literal``."""
        t = self.trigger
        return AlertRule(
            alert=t.alert,
            expr=expr,
            for_=t.for_ if for_ is None else for_,
            labels={**self.labels, **(labels or {})},
            annotations={
                "summary": plan_text(t.summary) if t.summary else summary,
                "description": plan_text(t.description) if t.description else description,
                "runbook_url": self.runbook_url,
                # read by the people's notification template (rules/notify.py)
                "value": self.value,
                "webhook_action": literal(notify.action_summary(self.plan, t.action)),
            },
            keep_firing_for=keep_firing_for,
        )
