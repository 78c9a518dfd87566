"""``availability``: the share of a track's counted probes that succeeded, below a threshold."""

from __future__ import annotations

from fractions import Fraction

from canary_guard import contract

from .. import names
from .ratio import RatioUnit


class Availability(RatioUnit):
    kind = "availability"
    level = names.TRACK
    what = "availability"
    compare, word = "<", "below"
    title = "availability"
    # nulls are not errors but do cost availability: the tests breach it with them
    failure = contract.NULL

    def scope(self) -> str:
        return "{{ $labels.track }}"

    def margin(self, threshold: float) -> Fraction:
        return 1 - Fraction(str(threshold))

    def shown(self, failed: Fraction) -> float:
        return float(1 - failed)
