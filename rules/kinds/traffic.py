"""Traffic triggers (``source: traffic``): the error rate, availability and average latency of the
service's own requests, per track and endpoint, judged like the probe triggers of their kind.

They read the traffic family of recording rules (``rules/traffic.py``) instead of the probes',
and count requests instead of probes: a ratio fires only once its window holds
``min_requests`` requests (derived like ``min_probes``: at 2%, 50), so that a sparse canary
(one failure in 20 requests is 5%) never rolls back; a latency average needs 10. Probes are
requests too and count here, but at a probe every 15 s they are far fewer than the minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar

from canary_guard.plan import min_requests

from .. import names, traffic
from ..model import AlertRule, RecordingRule
from ..promql import labels as label_set
from ..promql import num, pct, seconds_text
from ..promtest import AlertCheck, ExprCheck, UnitTest
from ..templating import stable
from .base import WHERE, Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases

SOURCE = "traffic"


def _held(ctx: Context) -> float:
    """The alert's ``for``: the context's (a baseline-aware trigger waits out a grace) or the
    trigger's own."""
    return getattr(ctx, "for_", ctx.trigger.for_)


def _short_pct(value: float) -> str:
    return f"{value * 100:.4g}%"


class TrafficUnit(TriggerUnit):
    """What every traffic unit shares: the traffic family of its window, no probe family."""

    level: ClassVar[str] = names.TRACK_ENDPOINT

    def windows(self, ctx: Context) -> list[float]:
        return []  # the probes' family is not needed for this trigger

    def recording_rules(self, ctx: Context) -> list[RecordingRule]:
        return traffic.window_rules(ctx.plan, ctx.window)

    def on(self) -> str:
        return "track, endpoint" if self.level == names.TRACK_ENDPOINT else "track"

    def condition(self, ctx: Context, matcher: str) -> str:
        raise NotImplementedError

    def texts(self, ctx: Context) -> tuple[str, str]:
        raise NotImplementedError

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        summary, description = self.texts(ctx)
        return [ctx.alert(self.condition(ctx, ctx.track_matcher), summary, description)]

    @staticmethod
    def statuses(ctx: Context) -> tuple[str, str]:
        """(a status value that means success, one that means failure) for the test series."""
        t = ctx.plan.traffic
        assert t is not None
        ok = next(v for v in ("success", "ok", "2xx", "200") if v not in t.failure)
        return ok, t.failure[0]


class TrafficRatio(TrafficUnit):
    value_format = "humanizePercentage"
    what: ClassVar[str]  # error_ratio, availability
    compare: ClassVar[str]
    word: ClassVar[str]
    title: ClassVar[str]

    def margin(self, threshold: float) -> Fraction:
        raise NotImplementedError

    def shown(self, failed: Fraction) -> float:
        raise NotImplementedError

    def scope(self) -> str:
        return WHERE if self.level == names.TRACK_ENDPOINT else "{{ $labels.track }}"

    def condition(self, ctx: Context, matcher: str) -> str:
        plan, t, win = ctx.plan, ctx.trigger, ctx.window
        assert t.threshold is not None
        ratio = names.traffic_ratio(self.level, self.what, win)
        return (
            f"{ratio}{{{matcher}}} {self.compare} {num(t.threshold)}\n"
            f"and on ({self.on()})\n"
            f"round({names.traffic(self.level, win)}{{{matcher}}} * {num(win)}) >= {min_requests(plan, t)}"
        )

    def texts(self, ctx: Context) -> tuple[str, str]:
        thr, n, scope = ctx.trigger.threshold, min_requests(ctx.plan, ctx.trigger), self.scope()
        assert thr is not None
        return (
            f"{scope}: {self.title} of user traffic {self.word} {pct(thr)}",
            f"The {self.title} of {scope}'s own requests (users and probes) is {ctx.value} over the "
            f"last {ctx.range} (threshold {pct(thr)}, judged once the window holds at least {n} "
            f"requests). {ctx.then}",
        )

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t, win = ctx.plan, ctx.trigger, ctx.window
        assert t.threshold is not None and plan.traffic is not None
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        ok, bad = self.statuses(ctx)
        margin = self.margin(t.threshold)
        n = cases.steps(win) + 3 + cases.steps(_held(ctx))
        at = cases.eval_at(n * cases.s)
        labels = {"track": track, "endpoint": ep} if self.level == names.TRACK_ENDPOINT else {"track": track}
        need = min_requests(plan, t)

        def case(frac: Fraction, scale: int = 1) -> dict[str, Sequence[float] | float]:
            # per scrape: enough requests that the window holds the minimum many times over
            f, c = frac.numerator, frac.denominator
            k = max(1, -(-need // max(1, cases.steps(win)))) * scale
            return {ok: (c - f) * k, bad: f * k}

        # the share at the threshold, less a thousandth: two rates of the service's counters
        # divided carry float noise either side of an exact threshold (0.995 is no binary float)
        inside = margin if Fraction(margin) == Fraction(float(margin)) else margin * Fraction(999, 1000)
        exactly = "exactly at" if inside == margin else "just inside"
        out = [UnitTest(
            f"{t.alert}: {self.title} of user traffic {exactly} {_short_pct(t.threshold)} does not fire",
            cases.s, cases.traffic_series(track, ep, n, case(inside)), [AlertCheck(at, t.alert, [])],
        )]
        for mult in (Fraction(5, 4), Fraction(3, 2), Fraction(2), Fraction(3)):
            over = margin * mult
            if over < 1 and stable(self.value_format, self.shown(over)):
                break
        value = self.shown(over)
        out.append(UnitTest(
            f"{t.alert}: {self.title} of user traffic of {_short_pct(value)} fires",
            cases.s, cases.traffic_series(track, ep, n, case(over)),
            [AlertCheck(at, t.alert, [cases.expect(ctx, labels, value)])],
        ))
        # sparse traffic: 1 failed request in 20 (5%, far past 2%) is below min_requests
        k = min(20, need // 2) if need >= 4 else 0
        if k:
            steps = cases.steps(win)
            per = [0.0] * (steps - k) + [1.0] * k if steps >= k else None
            if per is not None:
                fails = [0.0] * (steps - 1) + [1.0]
                oks = [p - f for p, f in zip(per, fails, strict=True)]
                out.append(UnitTest(
                    f"{t.alert}: 1 failed request in {k} (< min_requests {need}) does not fire",
                    cases.s, cases.traffic_series(track, ep, steps, {ok: oks, bad: fails}),
                    [AlertCheck(cases.eval_at(steps * cases.s), t.alert, [])],
                ))
        # failures the plan ignores (a feature switched off) are neither errors nor requests
        tr = plan.traffic
        if tr.ignored_error_types and tr.errors is not None:
            record = names.traffic_ratio(names.TRACK_ENDPOINT, self.what, win)
            off = case(Fraction(1, 2), scale=2)
            out.append(UnitTest(
                f"{t.alert}: {tr.ignored_error_types[0]} failures of user traffic do not count",
                cases.s, cases.traffic_series(track, ep, n, off, {tr.ignored_error_types[0]: off[bad]}),
                [AlertCheck(at, t.alert, [])],
                [ExprCheck(at, record + label_set(track=track, endpoint=ep), [{
                    "labels": record + label_set(endpoint=ep, track=track),
                    "value": int(self.shown(Fraction(0))),
                }])],
            ))
        other = cases.unguarded(ctx)
        if other:
            out.append(UnitTest(
                f"{t.alert}: the same breach of user traffic on unguarded track {other} rolls nothing back",
                cases.s, cases.traffic_series(other, ep, n, case(over)),
                cases.none_of([t.alert, *cases.rollback_alerts()], at),
            ))
        # probe failures alone never fire a traffic trigger (and traffic failures no probe trigger)
        out.append(UnitTest(
            f"{t.alert}: failed probes without user traffic do not fire it",
            cases.s, cases.probe_series(track, ep, n, {"success": 1, "error": 1}),
            [AlertCheck(at, t.alert, [])],
        ))
        return out


class TrafficErrorRate(TrafficRatio):
    kind = "error_rate"
    what = "error_ratio"
    compare, word, title = ">", "above", "error rate"

    def margin(self, threshold: float) -> Fraction:
        return Fraction(str(threshold))

    def shown(self, failed: Fraction) -> float:
        return float(failed)


class TrafficAvailability(TrafficRatio):
    kind = "availability"
    level = names.TRACK
    what = "availability"
    compare, word, title = "<", "below", "availability"

    def margin(self, threshold: float) -> Fraction:
        return 1 - Fraction(str(threshold))

    def shown(self, failed: Fraction) -> float:
        return float(1 - failed)


class TrafficLatencyAvg(TrafficUnit):
    kind = "latency_avg"
    value_format = "humanizeDuration"

    def condition(self, ctx: Context, matcher: str) -> str:
        t, win = ctx.trigger, ctx.window
        assert t.threshold is not None
        return (
            f"{names.traffic_latency(self.level, 'avg', win)}{{{matcher}}} > {num(t.threshold)}\n"
            f"and on ({self.on()})\n"
            f"round({names.traffic(self.level, win)}{{{matcher}}} * {num(win)}) >= "
            f"{min_requests(ctx.plan, t)}"
        )

    def texts(self, ctx: Context) -> tuple[str, str]:
        t = ctx.trigger
        assert t.threshold is not None
        held = f" for {names.w(t.for_)}" if t.for_ else ""
        thr = seconds_text(t.threshold)
        return (
            f"{WHERE}: average latency of user traffic above {thr}{held}",
            f"The average latency of {WHERE}'s own requests (users and probes) is {ctx.value} over "
            f"the last {ctx.range} (threshold {thr}{held}, judged once the window holds at least "
            f"{min_requests(ctx.plan, t)} requests). {ctx.then}",
        )

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t, win = ctx.plan, ctx.trigger, ctx.window
        thr = t.threshold
        assert thr is not None
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        fill = cases.steps(win) + 2
        n = fill + cases.steps(_held(ctx)) + 2
        at = cases.eval_at(n * cases.s)
        need = min_requests(plan, t)
        per = max(1, -(-need // max(1, cases.steps(win) - 1)))  # requests per scrape: the minimum
        slow = float(Fraction(str(thr)) * Fraction(5, 4))
        exact = Fraction(str(thr)) == Fraction(thr)
        at_thr = thr if exact else float(Fraction(str(thr)) * Fraction(999, 1000))
        out = [
            UnitTest(f"{t.alert}: average latency of user traffic {'exactly' if exact else 'just below'} "
                     f"{seconds_text(thr)} does not fire",
                     cases.s, cases.traffic_latency(track, ep, [at_thr] * n, per),
                     [AlertCheck(at, t.alert, [])]),
            UnitTest(f"{t.alert}: average latency of user traffic {seconds_text(slow)} fires",
                     cases.s, cases.traffic_latency(track, ep, [slow] * n, per),
                     [AlertCheck(at, t.alert, [cases.expect(ctx, labels, slow)])]),
        ]
        # a few slow requests: far above the threshold, but fewer than the minimum
        steps = cases.steps(win)
        few = need - 1
        if steps > few:
            lat: list[float | None] = [None] * (steps - few) + [2 * thr] * few
            out.append(UnitTest(
                f"{t.alert}: {few} slow requests (< {need}) do not fire",
                cases.s, cases.traffic_latency(track, ep, lat, 1),
                [AlertCheck(cases.eval_at(steps * cases.s), t.alert, [])],
            ))
        hold = _held(ctx)
        if hold:
            # no requests, then every request slow and many (twice the minimum per scrape): the
            # condition holds from the first slow scrape on, and the alert waits out `for`
            quiet = fill
            start = cases.eval_at(quiet * cases.s)
            fire = cases.eval_at(start + hold)
            total = cases.steps(fire) + 2
            ramp: list[float | None] = [None] * (quiet - 1) + [2 * thr] * (total - quiet + 1)
            out.append(UnitTest(
                f"{t.alert}: {names.w(hold - 1)} of slow user traffic does not fire, "
                f"{names.w(hold)} does",
                cases.s, cases.traffic_latency(track, ep, ramp, 2 * need),
                [AlertCheck(start - cases.e, t.alert, []),
                 AlertCheck(start + hold - 1, t.alert, []),
                 AlertCheck(fire, t.alert, [cases.expect(ctx, labels, 2 * thr)])],
            ))
        other = cases.unguarded(ctx)
        if other:
            out.append(UnitTest(
                f"{t.alert}: slow user traffic on unguarded track {other} rolls nothing back",
                cases.s, cases.traffic_latency(other, ep, [2 * thr] * n, per),
                cases.none_of([t.alert, *cases.rollback_alerts()], at),
            ))
        return out


UNITS: dict[str, TrafficUnit] = {u.kind: u for u in (TrafficErrorRate(), TrafficAvailability(),
                                                      TrafficLatencyAvg())}
