"""``null_streak``: more than ``threshold`` null responses in a row from one endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from canary_guard import contract

from ..promql import selector
from ..promtest import AlertCheck, Series, UnitTest, encode
from .base import WHERE, Breach, Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases


class NullStreak(TriggerUnit):
    kind = "null_streak"
    value_format = "humanize"

    def condition(self, ctx: Context, matcher: str) -> str:
        assert ctx.trigger.threshold is not None
        # max_over_time keeps a streak that was scraped but reset before the next evaluation
        return (f"max by (track, endpoint) (max_over_time({contract.NULL_STREAK}{{{matcher}}}"
                f"[{ctx.range}])) > {int(ctx.trigger.threshold)}")

    def texts(self, ctx: Context) -> tuple[str, str]:
        assert ctx.trigger.threshold is not None
        n = int(ctx.trigger.threshold)
        return (
            f"{WHERE}: more than {n} null responses in a row",
            f"{WHERE} answered {ctx.value} probes in a row with a null result or null required "
            f"fields within the last {ctx.range} (threshold: more than {n}). {ctx.then}",
        )

    def breaching(self, ctx: Context, cases: Cases, track: str, healthy: bool = False,
                  late: int = 0) -> Breach | None:
        """The streak climbs one null a scrape past the threshold (``late``: that many
        scrapes later; ``healthy``: it stops at the threshold)."""
        assert ctx.trigger.threshold is not None
        thr = int(ctx.trigger.threshold)
        ep = ctx.plan.endpoints[0].name
        lead = 4
        top = thr if healthy else thr + 1
        first = (lead + thr) * cases.s  # the scrape that shows the breach on time
        at = cases.eval_at(cases.eval_at(first) + ctx.for_)
        n = cases.steps(at) + 2
        vals: list[float] = [0.0] * (lead + late) + [float(v) for v in range(1, top + 1)]
        vals += [float(top)] * (n + 1 - len(vals))
        return Breach([Series(selector(contract.NULL_STREAK, track=track, endpoint=ep), encode(vals))],
                      at, {"track": track, "endpoint": ep}, thr + 1)

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t = ctx.plan, ctx.trigger
        assert t.threshold is not None
        thr = int(t.threshold)
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        series = selector(contract.NULL_STREAK, track=track, endpoint=ep)
        lead = 4
        hold = cases.steps(ctx.for_)
        # streak climbs one null per scrape to thr, then a good answer resets it
        ok_vals = [0] * lead + list(range(1, thr + 1)) + [0] * (hold + 4)
        peak = cases.eval_at((lead + thr - 1) * cases.s)
        held = ctx.for_
        # ... and one more null does
        bad_vals = [0] * lead + list(range(1, thr + 2)) + [thr + 1] * (hold + 4)
        first = (lead + thr) * cases.s
        fire = cases.eval_at(cases.eval_at(first) + held)
        return [
            UnitTest(
                f"{t.alert}: {thr} null responses in a row do not fire",
                cases.s, [Series(series, encode(ok_vals))],
                [AlertCheck(peak, t.alert, []), AlertCheck(cases.eval_at(peak + held), t.alert, [])],
            ),
            UnitTest(
                f"{t.alert}: {thr + 1} null responses in a row fire",
                cases.s, [Series(series, encode(bad_vals))],
                [AlertCheck(cases.eval_at(first) - cases.e, t.alert, []),
                 AlertCheck(fire, t.alert, [cases.expect(ctx, labels, thr + 1)])],
            ),
        ]

    def baseline_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        out = super().baseline_cases(ctx, cases)
        if ctx.baseline is None:
            return out
        # the baseline reaches the same streak a scrape later (its probes land a little later):
        # still one cause, within the grace; no rollback
        track = ctx.tracks[0]
        bad = self.breaching(ctx, cases, track)
        late = self.breaching(ctx, cases, ctx.baseline, late=1)
        assert bad is not None and late is not None
        at = cases.eval_at(bad.at + cases.s)
        from .. import shared

        # at no evaluation from the canary's breach on does the rollback fire: it waits its
        # `for`, and by then the baseline shows the same streak
        start = cases.eval_at((4 + int(ctx.trigger.threshold or 0)) * cases.s)
        times = [start + i * cases.e for i in range(int((at - start) / cases.e) + 1)]
        out.append(UnitTest(
            f"{ctx.trigger.alert}: baseline {ctx.baseline} shows the same streak a scrape later: "
            "only the shared-cause page",
            cases.s, bad.series + late.series,
            [*(AlertCheck(x, ctx.trigger.alert, []) for x in times),
             *cases.none_of(cases.rollback_alerts(), at),
             AlertCheck(at, ctx.plan.shared_cause.alert, [shared.expect(ctx.plan, bad.labels)])],
        ))
        return out
