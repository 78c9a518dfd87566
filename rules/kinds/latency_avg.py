"""``latency_avg``: an endpoint's average probe latency over the window, above a threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

from canary_guard import contract
from canary_guard.durations import format_duration

from .. import names
from ..promql import num, seconds_text, selector
from ..promtest import AlertCheck, Series, UnitTest, cumulative, encode
from .base import WHERE, Breach, Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases


def latency_series(track: str, ep: str, lat: Sequence[float | None]) -> list[Series]:
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

    def condition(self, ctx: Context, matcher: str) -> str:
        thr = ctx.trigger.threshold
        assert thr is not None
        return f"{self.average(ctx)}{{{matcher}}} > {num(thr)}"

    def average(self, ctx: Context) -> str:
        return names.latency(names.TRACK_ENDPOINT, "avg", ctx.window)

    def held(self, ctx: Context, expr: str) -> str:
        """Hysteresis: a firing alert stays firing until the average is back at or below the
        clear level, so an average hovering around the threshold pages once, not each time
        it crosses."""
        t = ctx.trigger
        firing = (f'ALERTS{{alertname="{t.alert}", alertstate="firing", trigger="{t.name}", '
                  f"{ctx.track_matcher}}}")
        return (f"{expr}\nor\n(\n  {self.average(ctx)}{{{ctx.track_matcher}}} > "
                f"{num(ctx.plan.latency_clear(t))}\n  and on (track, endpoint)\n  {firing}\n)")

    def texts(self, ctx: Context) -> tuple[str, str]:
        t, thr = ctx.trigger, ctx.trigger.threshold
        assert thr is not None
        held = f" for {names.w(t.for_)}" if t.for_ else ""
        clear = seconds_text(ctx.plan.latency_clear(t))
        return (
            f"{WHERE}: average latency above {seconds_text(thr)}{held}",
            f"The average probe latency of {WHERE} is {ctx.value} over the last {ctx.range} "
            f"(threshold {seconds_text(thr)}{held}; once firing it resolves at {clear}). {ctx.then}",
        )

    def breaching(self, ctx: Context, cases: Cases, track: str, healthy: bool = False) -> Breach | None:
        thr = ctx.trigger.threshold
        assert thr is not None
        n = cases.steps(ctx.window) + 2 + cases.steps(ctx.for_) + 2
        lat = float(Fraction(str(thr)) * (Fraction(1, 2) if healthy else Fraction(5, 4)))
        ep = ctx.plan.endpoints[0].name
        return Breach(latency_series(track, ep, [lat] * n), cases.eval_at(n * cases.s),
                      {"track": track, "endpoint": ep}, lat)

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t, win, thr = ctx.plan, ctx.trigger, ctx.window, ctx.trigger.threshold
        assert thr is not None
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        fill = cases.steps(win) + 2
        # threshold: a window of probes at exactly the threshold, then one just above
        n = fill + cases.steps(ctx.for_) + 2
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
        # hysteresis: slow, then between the clear level and the threshold (still firing), then
        # below the clear level (resolved); each checked at the last evaluation of its phase,
        # when the window holds that phase's probes only
        clear = ctx.plan.latency_clear(t)
        mid = float((Fraction(str(thr)) + Fraction(str(clear))) / 2)
        fast = float(Fraction(str(clear)) / 2)
        a = fill + cases.steps(ctx.for_ + cases.e) + 2
        b = cases.steps(win + cases.e) + 1
        c = cases.steps(win + cases.e + ctx.plan.keep_firing_for(t)) + 1

        def last_eval(scrapes: int) -> float:
            return math.floor(scrapes * cases.s / cases.e + 1e-9) * cases.e

        out.append(UnitTest(
            f"{t.alert}: hysteresis: fires above {seconds_text(thr)}, still firing at "
            f"{seconds_text(mid)}, resolved at {seconds_text(fast)} (clear {seconds_text(clear)})",
            cases.s, latency_series(track, ep, [slow] * a + [mid] * b + [fast] * c),
            [AlertCheck(last_eval(a), t.alert, [cases.expect(ctx, labels, slow)]),
             AlertCheck(last_eval(a + b), t.alert, [cases.expect(ctx, labels, mid)]),
             AlertCheck(last_eval(a + b + c), t.alert, [])],
        ))
        hold = ctx.for_
        if not hold:
            return out
        # duration: no probes, then every probe slow; the condition holds from the first slow
        # scrape on, so the alert stays pending until `for` has passed since then
        quiet = fill
        start = cases.eval_at(quiet * cases.s)
        fire = cases.eval_at(start + hold)
        total = cases.steps(fire) + 2
        lat: list[float | None] = [None] * (quiet - 1) + [2 * thr] * (total - quiet + 1)
        out.append(UnitTest(
            f"{t.alert}: {format_duration(hold - 1)} of slow latency does not fire, "
            f"{format_duration(hold)} does",
            cases.s, latency_series(track, ep, lat),
            [
                AlertCheck(start - cases.e, t.alert, []),
                AlertCheck(start + hold - 1, t.alert, []),
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
