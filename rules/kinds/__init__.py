"""One unit per trigger kind, registered in one table keyed by kind.

Each module holds one kind's recording rules, alert rules and promtool tests side by side
(see ``base.TriggerUnit``). A new kind is a new module here plus one line in ``UNITS``; the
generator and the test builder find it by the trigger's ``kind``.
"""

from __future__ import annotations

from canary_guard.plan import Plan, Trigger

from .availability import Availability
from .base import Context, TriggerUnit
from .custom import Custom
from .error_rate import ErrorRate
from .latency_avg import LatencyAvg
from .null_streak import NullStreak
from .pii_exposure import PiiExposure
from .probes_missing import ProbesMissing

UNITS: dict[str, TriggerUnit] = {
    unit.kind: unit
    for unit in (ErrorRate(), LatencyAvg(), Availability(), NullStreak(), PiiExposure(),
                 ProbesMissing(), Custom())
}


def unit(kind: str) -> TriggerUnit:
    try:
        return UNITS[kind]
    except KeyError:
        raise KeyError(f"no rule unit for trigger kind {kind!r} (known: {', '.join(UNITS)})") from None


def context(plan: Plan, trigger: Trigger) -> Context:
    return Context(plan, trigger, unit(trigger.kind))


def contexts(plan: Plan) -> list[Context]:
    """Every trigger of the plan with its unit, in plan order."""
    return [context(plan, t) for t in plan.triggers]


__all__ = ["UNITS", "Context", "TriggerUnit", "context", "contexts", "unit"]
