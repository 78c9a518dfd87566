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
from .traffic import UNITS as TRAFFIC_UNITS

UNITS: dict[str, TriggerUnit] = {
    unit.kind: unit
    for unit in (ErrorRate(), LatencyAvg(), Availability(), NullStreak(), PiiExposure(),
                 ProbesMissing(), Custom())
}


def unit(kind: str, source: str = "probe") -> TriggerUnit:
    """The unit of a trigger kind; ``source: traffic`` triggers have their own (kinds/traffic.py)."""
    table = TRAFFIC_UNITS if source == "traffic" else UNITS
    try:
        return table[kind]
    except KeyError:
        raise KeyError(f"no rule unit for {source} trigger kind {kind!r} "
                       f"(known: {', '.join(table)})") from None


def context(plan: Plan, trigger: Trigger) -> Context:
    return Context(plan, trigger, unit(trigger.kind, trigger.source))


def contexts(plan: Plan) -> list[Context]:
    """Every trigger of the plan with its unit, in plan order."""
    return [context(plan, t) for t in plan.triggers]


__all__ = ["TRAFFIC_UNITS", "UNITS", "Context", "TriggerUnit", "context", "contexts", "unit"]
