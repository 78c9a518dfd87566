"""``pii_exposure``: responses carrying personal data (email, SSN, phone, card) in the window."""

from __future__ import annotations

from typing import TYPE_CHECKING

from canary_guard import contract

from .. import names
from ..promql import selector
from ..promtest import AlertCheck, Series, UnitTest, encode
from .base import WHERE, Breach, Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases


class PiiExposure(TriggerUnit):
    kind = "pii_exposure"
    value_format = 'printf "%.0f"'

    def condition(self, ctx: Context, matcher: str) -> str:
        n = int(ctx.trigger.threshold or 0)
        return (f"sum by (track, endpoint) (increase({contract.PII_EXPOSURES}{{{matcher}}}"
                f"[{ctx.range}])) > {n}")

    def texts(self, ctx: Context) -> tuple[str, str]:
        n = int(ctx.trigger.threshold or 0)
        any_ = "any PII exposure" if n == 0 else f"more than {n} PII exposures"
        keep = ctx.plan.keep_firing_for(ctx.trigger)
        kept = (f" It keeps firing for {names.w(keep)} after the last exposure, so that an outage "
                "of Alertmanager or the webhook cannot lose it.") if keep else ""
        return (
            f"{WHERE}: PII in responses",
            f"{WHERE} returned {ctx.value} response(s) containing personal data (email, SSN, phone or "
            f"card number) in the last {ctx.range}; this trigger fires on {any_}.{kept} {ctx.then}",
        )

    def breaching(self, ctx: Context, cases: Cases, track: str, healthy: bool = False) -> Breach | None:
        thr = int(ctx.trigger.threshold or 0)
        ep = ctx.plan.endpoints[0].name
        lead = cases.steps(ctx.window) + 2
        at = cases.eval_at(cases.eval_at(lead * cases.s) + ctx.for_)
        n = cases.steps(at) + 2
        count = 0 if healthy else thr + 1
        vals: list[float] = [0.0] * lead + [float(count)] * (n - lead + 1)
        return Breach([Series(selector(contract.PII_EXPOSURES, track=track, endpoint=ep,
                                  kind=contract.PII_KINDS[0]), encode(vals))],
                      at, {"track": track, "endpoint": ep}, thr + 1)

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t = ctx.plan, ctx.trigger
        thr = int(t.threshold or 0)
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        lead = cases.steps(ctx.window) + 2
        first = lead * cases.s
        fire = cases.eval_at(cases.eval_at(first) + ctx.for_)
        keep = plan.keep_firing_for(t)
        # the exposure leaves the window between these two times (by a scrape either way); the
        # alert then keeps firing for `keep`
        gone_lo, gone_hi = first + ctx.window - cases.s, first + ctx.window + cases.s
        n = cases.steps(gone_hi + keep) + 3
        count = thr + 1
        vals = [0] * lead + [count] * (n - lead + 1)
        email, ssn = contract.PII_KINDS[0], contract.PII_KINDS[1]
        pii = contract.PII_EXPOSURES
        series = [
            Series(selector(pii, track=track, endpoint=ep, kind=email), encode(vals)),
            Series(selector(pii, track=track, endpoint=ep, kind=ssn), encode([0] * (n + 1))),
        ]
        word = "one PII exposure fires" if count == 1 else f"{count} PII exposures fire"
        checks = [AlertCheck(cases.eval_at(first) - cases.e, t.alert, []),
                  AlertCheck(fire, t.alert, [cases.expect(ctx, labels, count)])]
        if keep:
            # once the exposure has left the window the condition is false: the alert's value
            # is the last one it had, and it fires on until keep_firing_for has passed
            word += f" and keeps firing for {names.w(keep)} (an Alertmanager outage cannot lose it)"
            checks += [AlertCheck(cases.eval_at(gone_lo + keep) - cases.e, t.alert,
                                  [cases.expect(ctx, labels, count)]),
                       AlertCheck(cases.eval_at(gone_hi + keep) + cases.e, t.alert, [])]
        else:
            checks.append(AlertCheck(cases.eval_at(gone_hi) + cases.e, t.alert, []))
        return [UnitTest(f"{t.alert}: {word}", cases.s, series, checks)]
