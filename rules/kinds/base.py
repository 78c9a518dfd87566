"""What every trigger unit is: the interface, and the per-trigger context it works from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from canary_guard import contract
from canary_guard.plan import Plan, Trigger

from .. import names, notify, promql
from ..model import AlertRule, RecordingRule
from ..promtest import AlertCheck, Series, UnitTest
from ..templating import literal, plan_text, value_placeholder

if TYPE_CHECKING:
    from ..cases import Cases

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
    # where the trigger judges: each endpoint of a track, or the track as a whole
    level: ClassVar[str] = names.TRACK_ENDPOINT

    def windows(self, ctx: Context) -> list[float]:
        """Ranges that need the shared family of recording rules (``recording.window_rules``)."""
        return [ctx.window]

    # -- the breach, and the alert built from it ------------------------------------------
    # A kind that judges probe data says what a breach is (``condition``) and how its alert
    # reads (``texts``); the base turns that into the alert, compared with the baseline
    # when the trigger has one. Kinds that judge something else override ``alert_rules``.

    def condition(self, ctx: Context, matcher: str) -> str:
        """PromQL that keeps, with its measured value, each series of the tracks selected by
        ``matcher`` that breaches the trigger now."""
        raise NotImplementedError

    def texts(self, ctx: Context) -> tuple[str, str]:
        """The alert's default summary and description."""
        raise NotImplementedError

    def held(self, ctx: Context, expr: str) -> str:
        """The alert's condition once firing (latency: hysteresis); the breach itself here."""
        return expr

    def recording_rules(self, ctx: Context) -> list[RecordingRule]:
        """With a baseline: which tracks breach now (guarded and baseline), for the comparison
        and for the shared-cause alert (``rules/shared.py``)."""
        if ctx.baseline is None:
            return []
        both = promql.tracks_matcher([*ctx.tracks, ctx.baseline])
        return [RecordingRule(
            names.breach(self.level),
            f"group by ({names.by(self.level)}) (\n{self.condition(ctx, both)}\n)",
            {"trigger": ctx.trigger.name},
        )]

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        expr = self.held(ctx, self.condition(ctx, ctx.track_matcher))
        summary, description = self.texts(ctx)
        if ctx.baseline is not None:
            expr = f"(\n{expr}\n)\nunless on ({names.matched_on(self.level)})\n{ctx.baseline_breached()}"
            where = " and endpoint" if self.level == names.TRACK_ENDPOINT else ""
            description += (f" The baseline {ctx.baseline} does not breach this trigger over the same "
                            f"window{where}: the release is the difference.")
        return [ctx.alert(expr, summary, description, for_=ctx.for_,
                          keep_firing_for=ctx.plan.keep_firing_for(ctx.trigger))]

    # -- generated tests ---------------------------------------------------------------------

    def breaching(self, ctx: Context, cases: Cases, track: str, healthy: bool = False) -> Breach | None:
        """Input series on which ``track`` breaches this trigger (``healthy``: the same probes,
        none breaching), for the baseline tests; None when the kind builds no such case."""
        return None

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        """promtool test cases that pin this trigger at its boundary (none by default)."""
        return []

    def baseline_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        """The comparison with the baseline at its boundaries: the guarded track breaches and
        the baseline is healthy (fires), both breach (only the shared-cause page), the baseline
        has no data (fires: no data never blocks a rollback)."""
        base = ctx.baseline
        if base is None:
            return []
        track = ctx.tracks[0]
        bad, good = self.breaching(ctx, cases, track), self.breaching(ctx, cases, track, healthy=True)
        other, base_good = self.breaching(ctx, cases, base), self.breaching(ctx, cases, base, healthy=True)
        if bad is None or good is None or other is None or base_good is None:
            return []
        from .. import shared

        t = ctx.trigger
        at = bad.at
        fires = [AlertCheck(at, t.alert, [cases.expect(ctx, bad.labels, bad.value)])]
        quiet_shared = AlertCheck(at, ctx.plan.shared_cause.alert, [])
        shared_alert = shared.expect(ctx.plan, bad.labels)
        return [
            UnitTest(f"{t.alert}: {track} breaches, baseline {base} healthy: fires",
                     cases.s, bad.series + base_good.series, [*fires, quiet_shared]),
            UnitTest(f"{t.alert}: {track} and baseline {base} both breach: only the shared-cause page",
                     cases.s, bad.series + other.series,
                     [*cases.none_of([t.alert, *cases.rollback_alerts()], at),
                      AlertCheck(at, ctx.plan.shared_cause.alert, [shared_alert])]),
            UnitTest(f"{t.alert}: {track} breaches, baseline {base} without data: fires",
                     cases.s, bad.series, [*fires, quiet_shared]),
            UnitTest(f"{t.alert}: {track} healthy, baseline {base} breaches: nothing",
                     cases.s, good.series + other.series,
                     [*cases.none_of([t.alert, ctx.plan.shared_cause.alert, *cases.rollback_alerts()], at)]),
        ]


@dataclass
class Breach:
    """Input series for one track, and when and how the trigger's alert shows on them."""

    series: list[Series]
    at: float  # an evaluation time by which the alert fires (its `for` included)
    labels: dict[str, str]  # the alert's series labels (track, endpoint)
    value: float  # the value the alert shows


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
    def for_(self) -> float:
        """The alert's ``for``: with a baseline at least the grace the baseline has to show the
        same breach (``Plan.trigger_for``)."""
        return self.plan.trigger_for(self.trigger)

    def baseline_breached(self) -> str:
        """The baseline's breaches of this trigger within the grace: recent enough to be the
        same cause as the guarded track's (a breach whose window drains a probe earlier on one
        track than the other is still one cause)."""
        level = self.unit.level
        sel = (f'{names.breach(level)}{{trigger="{self.trigger.name}", '
               f'{contract.TRACK}="{self.baseline}"}}')
        return f"max_over_time({sel}[{names.w(self.plan.baseline_grace())}])"

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
