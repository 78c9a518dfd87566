"""What the two ratio triggers share: a ratio over a window, judged once it holds enough probes.

``error_rate`` judges each endpoint, ``availability`` the whole track; the subclasses say which.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar

from canary_guard import contract

from .. import names
from ..model import AlertRule
from ..promql import labels as label_set
from ..promql import num, pct
from ..promtest import AlertCheck, ExprCheck, UnitTest
from ..templating import stable
from .base import Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases


def _short_pct(value: float) -> str:
    return f"{value * 100:.4g}%"


class RatioUnit(TriggerUnit):
    value_format = "humanizePercentage"
    level: ClassVar[str]  # names.TRACK_ENDPOINT or names.TRACK
    what: ClassVar[str]  # the ratio's recording-rule metric: error_ratio, availability
    compare: ClassVar[str]  # ">" or "<": how the ratio breaches the threshold
    word: ClassVar[str]  # "above" / "below"
    title: ClassVar[str]  # "error rate" / "availability"
    failure: ClassVar[str]  # the outcome the tests use to breach it

    def on(self) -> str:
        return "track, endpoint" if self.level == names.TRACK_ENDPOINT else "track"

    def scope(self) -> str:
        """Where the alert fired, as its annotations say it."""
        raise NotImplementedError

    def margin(self, threshold: float) -> Fraction:
        """The share of failed probes at the threshold."""
        raise NotImplementedError

    def shown(self, failed: Fraction) -> float:
        """The ratio the alert shows when this share of probes failed."""
        raise NotImplementedError

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        plan, t, win = ctx.plan, ctx.trigger, ctx.window
        n, thr, tracks = plan.min_probes(t), t.threshold, ctx.track_matcher
        assert thr is not None  # the plan model requires it for ratio kinds
        expr = (
            f"{names.ratio(self.level, self.what, win)}{{{tracks}}} {self.compare} {num(thr)}\n"
            f"and on ({self.on()})\n"
            f"round({names.probes(self.level, win)}{{{tracks}}} * {num(win)}) >= {n}"
        )
        scope = self.scope()
        return [ctx.alert(
            expr,
            f"{scope}: {self.title} {self.word} {pct(thr)}",
            f"The {self.title} of {scope} is {ctx.value} over the last {ctx.range} "
            f"(threshold {pct(thr)}, judged once the window holds at least {n} probes). {ctx.then}",
        )]

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t, win = ctx.plan, ctx.trigger, ctx.window
        assert t.threshold is not None
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        margin = self.margin(t.threshold)
        n = cases.steps(win) + 3
        at = cases.eval_at(n * cases.s)
        labels = {"track": track, "endpoint": ep} if self.level == names.TRACK_ENDPOINT else {"track": track}
        bad = self.failure
        out: list[UnitTest] = []

        def case(frac: Fraction) -> dict[str, Sequence[float] | float]:
            f, c = frac.numerator, frac.denominator
            return {contract.SUCCESS: c - f, bad: f}

        out.append(UnitTest(
            f"{t.alert}: {self.title} exactly at {_short_pct(t.threshold)} does not fire",
            cases.s, cases.probe_series(track, ep, n, case(margin)),
            [AlertCheck(at, t.alert, [])],
        ))
        # the smallest step past the threshold whose shown value float noise cannot change
        for mult in (Fraction(5, 4), Fraction(3, 2), Fraction(2), Fraction(3)):
            over = margin * mult
            if over >= 1:
                continue
            value = self.shown(over)
            if stable(self.value_format, value):
                break
        out.append(UnitTest(
            f"{t.alert}: {self.title} of {_short_pct(value)} fires",
            cases.s, cases.probe_series(track, ep, n, case(over)),
            [AlertCheck(at, t.alert, [cases.expect(ctx, labels, value)])],
        ))
        # one failure among too few probes: the ratio is far past the threshold, but no alert
        need = plan.min_probes(t)
        if need >= 4:
            k = need // 2
            incs: dict[str, Sequence[float] | float] = {contract.SUCCESS: [1] * (k - 1) + [0],
                                                    bad: [0] * (k - 1) + [1]}
            out.append(UnitTest(
                f"{t.alert}: 1 failed probe out of {k} (< min_probes {need}) does not fire",
                cases.s, cases.probe_series(track, ep, k, incs),
                [AlertCheck(cases.eval_at(k * cases.s), t.alert, [])],
            ))
        # feature-flag 503s (outcome disabled) are neither errors nor missing availability
        feat = next((e for e in plan.endpoints if e.feature), None)
        if feat:
            record = names.ratio(names.TRACK_ENDPOINT, self.what, win)
            out.append(UnitTest(
                f"{t.alert}: disabled feature {feat.feature} answering 503 does not count",
                cases.s, cases.probe_series(track, feat.name, n,
                                            {contract.SUCCESS: 1, contract.DISABLED: 20}),
                [AlertCheck(at, t.alert, [])],
                [ExprCheck(at, record + label_set(track=track, endpoint=feat.name), [{
                    "labels": record + label_set(endpoint=feat.name, track=track),
                    "value": int(self.shown(Fraction(0))),  # nothing failed: 0 errors, all available
                }])],
            ))
        other = cases.unguarded(ctx)
        if other:
            out.append(UnitTest(
                f"{t.alert}: the same breach on unguarded track {other} rolls nothing back",
                cases.s, cases.probe_series(other, ep, n, case(over)),
                cases.none_of([t.alert, *cases.rollback_alerts()], at),
            ))
        return out
