"""Plan -> ``promtool test rules`` cases: every trigger at its boundary, and the phase gates.

Each trigger's unit (``kinds/``) builds its own cases from synthetic exporter series (the
metric contract) and states which alerts fire, with their exact labels and annotations.
"""

from __future__ import annotations

from canary_guard.plan import Plan

from . import gates, kinds, own, shared
from .cases import Cases
from .promtest import UnitTest


def build_tests(plan: Plan) -> list[UnitTest]:
    contexts = kinds.contexts(plan)
    cases = Cases(plan, contexts)
    out: list[UnitTest] = []
    for ctx in contexts:
        out += ctx.unit.test_cases(ctx, cases)
        out += ctx.unit.baseline_cases(ctx, cases)
    out += shared.test_cases(plan, cases)
    out += gates.test_cases(plan, cases)
    out += own.test_cases(plan, cases)
    return out
