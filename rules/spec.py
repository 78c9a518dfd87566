"""Plan -> rule groups: every recording and alerting rule, before any output format.

The generator only assembles: each trigger's unit (``kinds/``) says which windows it needs
recorded and which alerts it raises, the shared-cause alert (``shared.py``) pages when a
baseline breaches with its guarded track, the phase gates (``gates.py``) add theirs, and
``recording.py`` gives every window the shared family of recording rules. The output layer
(``render.py``) only turns the result into files.
"""

from __future__ import annotations

from canary_guard.plan import Plan, Trigger

from . import gates, kinds, own, recording, shared, traffic
from .model import AlertRule, RecordingRule, RuleGroup


def windows(plan: Plan) -> list[float]:
    """Every range the rules record: what each trigger's unit asks for and each gate window."""
    out = {win for ctx in kinds.contexts(plan) for win in ctx.unit.windows(ctx)}
    out.update(gates.windows(plan))
    return sorted(out)


def alert_rules(plan: Plan, trigger: Trigger) -> list[AlertRule]:
    ctx = kinds.context(plan, trigger)
    return ctx.unit.alert_rules(ctx)


def build_groups(plan: Plan) -> list[RuleGroup]:
    """Recording rules, phase gates and alerts, in the order Prometheus should evaluate them."""
    interval = plan.prometheus.evaluation_interval
    prefix = f"canary-guard-{plan.name}"
    contexts = kinds.contexts(plan)
    recorded: list[RecordingRule] = [r for win in windows(plan) for r in recording.window_rules(win)]
    # the service's own traffic at its window, for the dashboard and status (rules/traffic.py)
    recorded += traffic.default_rules(plan)
    # a unit's own rules follow the family; triggers of one kind may ask for the same rule
    for rule in (r for ctx in contexts for r in ctx.unit.recording_rules(ctx)):
        if rule not in recorded:
            recorded.append(rule)
    alerts = [a for ctx in contexts for a in ctx.unit.alert_rules(ctx)] + shared.alert_rules(plan)
    groups = [
        RuleGroup(f"{prefix}-recording", interval, recorded),
        RuleGroup(f"{prefix}-gates", interval, gates.gate_rules(plan)),
    ]
    if alerts:
        groups.append(RuleGroup(f"{prefix}-alerts", interval, alerts))
    # canary-guard's own health (the webhook's failures, the webhook down): rules/own.py
    groups.append(RuleGroup(f"{prefix}-self", interval, own.alert_rules(plan)))
    return groups


def recording_names(plan: Plan) -> list[str]:
    return [r.record for g in build_groups(plan) for r in g.rules if isinstance(r, RecordingRule)]


def group_names(plan: Plan) -> list[str]:
    return [g.name for g in build_groups(plan)]
