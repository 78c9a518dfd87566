"""Plan -> rule groups: every recording and alerting rule, before any output format.

The generator only assembles: each trigger's unit (``kinds/``) says which windows it needs
recorded and which alerts it raises, the shared-cause alert (``shared.py``) pages when a
baseline breaches with its guarded track, the phase gates (``gates.py``) add theirs, and
``recording.py`` gives every window the shared family of recording rules. The output layer
(``render.py``) only turns the result into files.
"""

from __future__ import annotations

import re

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


# how much less often the slow recording group runs than the others
SLOW_EVERY = 4
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def alert_inputs(rules: list[RecordingRule], alerts: list[AlertRule]) -> set[str]:
    """The recording rules the alerts read, directly or through other recording rules."""
    exprs = {r.record: r.expr for r in rules}
    todo = [name for a in alerts for name in _NAME.findall(a.expr) if name in exprs]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [n for n in _NAME.findall(exprs[name]) if n in exprs]
    return seen


def build_groups(plan: Plan) -> list[RuleGroup]:
    """Recording rules, phase gates and alerts, in the order Prometheus should evaluate them.

    Prometheus runs the rules of a group one after the other and different groups side by side,
    so the recording rules are split by who waits for them: ``-recording`` holds exactly what
    the alerts read, and what those rules read; ``-recording-slow`` the rest
    of the family (windows and levels only phase gates and dashboards read, the service's
    traffic at its window, and every latency quantile), evaluated ``SLOW_EVERY`` times less
    often. At 1,000 endpoints the slow part costs several times the other (long windows hold
    many samples; a quantile takes the rate of every histogram bucket: bench/bench_scale.py);
    apart, it never holds up a rollback alert, and run less often it leaves Prometheus the CPU
    for the alerts.
    """
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
    # only what the alerts read: a unit's own rules may hold a whole family (the traffic
    # triggers' quantiles) that only dashboards read, and cost 13 s a round at 1,000 endpoints
    fast = alert_inputs(recorded, alerts)
    slow = [r for r in recorded if r.record not in fast]
    slow += [r for win in windows(plan) for r in recording.quantile_rules(win)]
    groups = [
        RuleGroup(f"{prefix}-recording", interval, [r for r in recorded if r.record in fast]),
        RuleGroup(f"{prefix}-recording-slow", SLOW_EVERY * interval, slow),
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
