"""Plan -> rule groups: every recording and alerting rule, before any output format.

The generator only assembles: each trigger's unit (``kinds/``) says which windows it needs
recorded and which alerts it raises, the phase gates (``gates.py``) add theirs, and
``recording.py`` gives every window the shared family of recording rules. The output layer
(``render.py``) only turns the result into files.
"""

from __future__ import annotations

from canary_guard.plan import Plan, Trigger

from . import gates, kinds, own, recording
from .model import AlertRule, RecordingRule, RuleGroup


def windows(plan: Plan) -> list[float]:
    """Every range the rules record: what each trigger's unit asks for and each gate window."""
    out = {win for ctx in kinds.contexts(plan) for win in ctx.unit.windows(ctx)}
    out.update(gates.windows(plan))
    return sorted(out)


def alert_rules(plan: Plan, trigger: Trigger) -> list[AlertRule]:
    ctx = kinds.context(plan, trigger)
    return ctx.unit.alert_rules(ctx)


def trigger_windows(plan: Plan) -> list[float]:
    """The ranges the alerts read: what each trigger's unit asks for."""
    return sorted({win for ctx in kinds.contexts(plan) for win in ctx.unit.windows(ctx)})


def build_groups(plan: Plan) -> list[RuleGroup]:
    """Recording rules, phase gates and alerts, in the order Prometheus should evaluate them.

    Prometheus runs the rules of a group one after the other and different groups side by side,
    so the recording rules are split by who waits for them: ``-recording`` holds what the alerts
    read (the family for the triggers' windows, and the units' own rules), ``-recording-slow``
    the rest (the family for windows only the phase gates and dashboards read, and every latency
    quantile). The slow part costs several times the other at 1,000 endpoints (long windows hold
    many samples; a quantile takes the rate of every histogram bucket: bench/bench_scale.py)
    and, in its own group, never holds up a rollback alert.
    """
    interval = plan.prometheus.evaluation_interval
    prefix = f"canary-guard-{plan.name}"
    contexts = kinds.contexts(plan)
    fast = trigger_windows(plan)
    recorded: list[RecordingRule] = [r for win in fast for r in recording.window_rules(win)]
    # a unit's own rules follow the family; triggers of one kind may ask for the same rule
    for rule in (r for ctx in contexts for r in ctx.unit.recording_rules(ctx)):
        if rule not in recorded:
            recorded.append(rule)
    slow = [r for win in windows(plan) if win not in fast for r in recording.window_rules(win)]
    slow += [r for win in windows(plan) for r in recording.quantile_rules(win)]
    alerts = [a for ctx in contexts for a in ctx.unit.alert_rules(ctx)]
    groups = [
        RuleGroup(f"{prefix}-recording", interval, recorded),
        RuleGroup(f"{prefix}-recording-slow", interval, slow),
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
