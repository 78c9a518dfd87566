"""``latency_avg``: an endpoint's average probe latency over the window, above a threshold."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from canary_guard import contract
from canary_guard.durations import format_duration

from .. import names
from ..model import AlertRule
from ..promql import num, seconds_text, selector
from ..promtest import AlertCheck, Series, UnitTest, cumulative, encode
from .base import WHERE, Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases


def latency_series(track: str, ep: str, lat: list[float | None]) -> list[Series]:
    """One probe per scrape with the given latencies (None: no probe in that scrape)."""
    counts = [0 if x is None else 1 for x in lat]
    sums = [0 if x is None else x for x in lat]
    dur = contract.PROBE_DURATION
    return [
        Series(selector(f"{dur}_count", track=track, endpoint=ep), encode(cumulative(counts))),
        Series(selector(f"{dur}_sum", track=track, endpoint=ep), encode(cumulative(sums))),
    ]


class LatencyAvg(TriggerUnit):
    kind = "latency_avg"
    value_format = "humanizeDuration"

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        t, thr = ctx.trigger, ctx.trigger.threshold
        assert thr is not None
        held = f" for {names.w(t.for_)}" if t.for_ else ""
        return [ctx.alert(
            f"{names.latency(names.TRACK_ENDPOINT, 'avg', ctx.window)}{{{ctx.track_matcher}}} > {num(thr)}",
            f"{WHERE}: average latency above {seconds_text(thr)}{held}",
            f"The average probe latency of {WHERE} is {ctx.value} over the last {ctx.range} "
            f"(threshold {seconds_text(thr)}{held}). {ctx.then}",
        )]

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t, win, thr = ctx.plan, ctx.trigger, ctx.window, ctx.trigger.threshold
        assert thr is not None
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        fill = cases.steps(win) + 2
        # threshold: a window of probes at exactly the threshold, then one just above
        n = fill + cases.steps(t.for_) + 2
        at = cases.eval_at(n * cases.s)
        slow = float(Fraction(str(thr)) * Fraction(5, 4))
        # a threshold that binary floats hold exactly (1s, 500ms) is tested exactly; others
        # (400ms) just below, since summing 0.4s probes drifts above 0.4 in any Prometheus
        exact = Fraction(str(thr)) == Fraction(thr)
        at_thr = thr if exact else float(Fraction(str(thr)) * Fraction(999, 1000))
        out = [
            UnitTest(
                f"{t.alert}: average latency {'exactly' if exact else 'just below'} "
                f"{seconds_text(thr)} does not fire",
                cases.s, latency_series(track, ep, [at_thr] * n), [AlertCheck(at, t.alert, [])],
            ),
            UnitTest(
                f"{t.alert}: average latency {seconds_text(slow)} fires",
                cases.s, latency_series(track, ep, [slow] * n),
                [AlertCheck(at, t.alert, [cases.expect(ctx, labels, slow)])],
            ),
        ]
        if not t.for_:
            return out
        # duration: no probes, then every probe slow; the condition holds from the first slow
        # scrape on, so the alert stays pending until `for` has passed since then
        quiet = fill
        start = cases.eval_at(quiet * cases.s)
        fire = cases.eval_at(start + t.for_)
        total = cases.steps(fire) + 2
        lat: list[float | None] = [None] * (quiet - 1) + [2 * thr] * (total - quiet + 1)
        out.append(UnitTest(
            f"{t.alert}: {format_duration(t.for_ - 1)} of slow latency does not fire, "
            f"{format_duration(t.for_)} does",
            cases.s, latency_series(track, ep, lat),
            [
                AlertCheck(start - cases.e, t.alert, []),
                AlertCheck(start + t.for_ - 1, t.alert, []),
                AlertCheck(fire, t.alert, [cases.expect(ctx, labels, 2 * thr)]),
            ],
        ))
        other = cases.unguarded(ctx)
        if other:
            out.append(UnitTest(
                f"{t.alert}: slow latency on unguarded track {other} rolls nothing back",
                cases.s, latency_series(other, ep, [2 * thr] * total),
                cases.none_of([t.alert, *cases.rollback_alerts()], fire),
            ))
        return out
