"""``availability``: the share of a track's counted probes answered without an error, below a
threshold. A null answer is an answer: the null-streak trigger judges it, so that one cause
(nulls) never fires two rollback triggers."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from canary_guard import contract

from .. import names
from ..promtest import AlertCheck, ExprCheck, UnitTest
from .base import Context
from .ratio import RatioUnit

if TYPE_CHECKING:
    from ..cases import Cases


class Availability(RatioUnit):
    kind = "availability"
    level = names.TRACK
    what = "availability"
    compare, word = "<", "below"
    title = "availability"
    failure = contract.ERROR

    def scope(self) -> str:
        return "{{ $labels.track }}"

    def margin(self, threshold: float) -> Fraction:
        return 1 - Fraction(str(threshold))

    def shown(self, failed: Fraction) -> float:
        return float(1 - failed)

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        out = super().test_cases(ctx, cases)
        track, ep, t = ctx.tracks[0], ctx.plan.endpoints[0].name, ctx.trigger
        n = cases.steps(ctx.window) + 3 + cases.steps(ctx.for_)
        at = cases.eval_at(n * cases.s)
        record = names.ratio(names.TRACK, self.what, ctx.window)
        out.append(UnitTest(
            f"{t.alert}: null answers are available (null_streak judges them, once)",
            cases.s, cases.probe_series(track, ep, n, {contract.SUCCESS: 1, contract.NULL: 1}),
            [AlertCheck(at, t.alert, [])],
            [ExprCheck(at, record + f'{{track="{track}"}}',
                       [{"labels": record + f'{{track="{track}"}}', "value": 1}])],
        ))
        return out
