"""``pii_exposure``: responses carrying personal data (email, SSN, phone, card) in the window."""

from __future__ import annotations

from typing import TYPE_CHECKING

from canary_guard import contract

from ..model import AlertRule
from ..promql import selector
from ..promtest import AlertCheck, Series, UnitTest, encode
from .base import WHERE, Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases


class PiiExposure(TriggerUnit):
    kind = "pii_exposure"
    value_format = 'printf "%.0f"'

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        n = int(ctx.trigger.threshold or 0)
        any_ = "any PII exposure" if n == 0 else f"more than {n} PII exposures"
        return [ctx.alert(
            f"sum by (track, endpoint) (increase({contract.PII_EXPOSURES}{{{ctx.track_matcher}}}"
            f"[{ctx.range}])) > {n}",
            f"{WHERE}: PII in responses",
            f"{WHERE} returned {ctx.value} response(s) containing personal data (email, SSN, phone or "
            f"card number) in the last {ctx.range}; this trigger fires on {any_}. {ctx.then}",
        )]

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t = ctx.plan, ctx.trigger
        thr = int(t.threshold or 0)
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        lead = cases.steps(ctx.window) + 2
        first = lead * cases.s
        fire = cases.eval_at(cases.eval_at(first) + t.for_)
        n = cases.steps(fire) + 2
        count = thr + 1
        vals = [0] * lead + [count] * (n - lead + 1)
        email, ssn = contract.PII_KINDS[0], contract.PII_KINDS[1]
        pii = contract.PII_EXPOSURES
        series = [
            Series(selector(pii, track=track, endpoint=ep, kind=email), encode(vals)),
            Series(selector(pii, track=track, endpoint=ep, kind=ssn), encode([0] * (n + 1))),
        ]
        word = "one PII exposure fires" if count == 1 else f"{count} PII exposures fire"
        return [UnitTest(
            f"{t.alert}: {word}", cases.s, series,
            [AlertCheck(cases.eval_at(first) - cases.e, t.alert, []),
             AlertCheck(fire, t.alert, [cases.expect(ctx, labels, count)])],
        )]
