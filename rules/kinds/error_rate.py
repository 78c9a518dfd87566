"""``error_rate``: the share of an endpoint's counted probes that failed, above a threshold."""

from __future__ import annotations

from fractions import Fraction

from canary_guard import contract

from .. import names
from .base import WHERE
from .ratio import RatioUnit


class ErrorRate(RatioUnit):
    kind = "error_rate"
    level = names.TRACK_ENDPOINT
    what = "error_ratio"
    compare, word = ">", "above"
    title = "error rate"
    failure = contract.ERROR

    def scope(self) -> str:
        return WHERE

    def margin(self, threshold: float) -> Fraction:
        return Fraction(str(threshold))

    def shown(self, failed: Fraction) -> float:
        return float(failed)
