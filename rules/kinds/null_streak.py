"""``null_streak``: more than ``threshold`` null responses in a row from one endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from canary_guard import contract

from ..model import AlertRule
from ..promql import selector
from ..promtest import AlertCheck, Series, UnitTest, encode
from .base import WHERE, Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases


class NullStreak(TriggerUnit):
    kind = "null_streak"
    value_format = "humanize"

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        assert ctx.trigger.threshold is not None
        n = int(ctx.trigger.threshold)
        # max_over_time keeps a streak that was scraped but reset before the next evaluation
        return [ctx.alert(
            f"max_over_time({contract.NULL_STREAK}{{{ctx.track_matcher}}}[{ctx.range}]) > {n}",
            f"{WHERE}: more than {n} null responses in a row",
            f"{WHERE} answered {ctx.value} probes in a row with a null result or null required "
            f"fields within the last {ctx.range} (threshold: more than {n}). {ctx.then}",
        )]

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t = ctx.plan, ctx.trigger
        assert t.threshold is not None
        thr = int(t.threshold)
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        series = selector(contract.NULL_STREAK, track=track, endpoint=ep)
        lead = 4
        hold = cases.steps(t.for_)
        # streak climbs one null per scrape to thr, then a good answer resets it
        ok_vals = [0] * lead + list(range(1, thr + 1)) + [0] * (hold + 4)
        peak = cases.eval_at((lead + thr - 1) * cases.s)
        # ... and one more null does
        bad_vals = [0] * lead + list(range(1, thr + 2)) + [thr + 1] * (hold + 4)
        first = (lead + thr) * cases.s
        fire = cases.eval_at(cases.eval_at(first) + t.for_)
        return [
            UnitTest(
                f"{t.alert}: {thr} null responses in a row do not fire",
                cases.s, [Series(series, encode(ok_vals))],
                [AlertCheck(peak, t.alert, []), AlertCheck(cases.eval_at(peak + t.for_), t.alert, [])],
            ),
            UnitTest(
                f"{t.alert}: {thr + 1} null responses in a row fire",
                cases.s, [Series(series, encode(bad_vals))],
                [AlertCheck(cases.eval_at(first) - cases.e, t.alert, []),
                 AlertCheck(fire, t.alert, [cases.expect(ctx, labels, thr + 1)])],
            ),
        ]
