"""One scenario per rollback trigger: the fault that breaks it, the alert and the action.

A scenario is derived from the plan's trigger (its kind, threshold, window, ``for``) so that
a plan with other thresholds gets faults that still cross them. What an action is expected
to leave behind (a recorded ``kubectl`` call, disabled features) is derived from the plan's
actions, sequences included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from canary_guard.durations import format_duration
from canary_guard.plan import Command, DisableFeature, Http, KubectlRollback, Page, Plan, Sequence, Trigger

# kinds the demo knows how to break; custom triggers have raw PromQL and no generic fault
SUPPORTED = ("error_rate", "latency_avg", "availability", "null_streak", "pii_exposure", "probes_missing")


@dataclass
class Expected:
    """What the action is expected to leave behind."""

    rollbacks: int = 0                                   # kubectl calls
    features: list[str] = field(default_factory=list)    # features disabled on the canary ("*": any)
    kinds: list[str] = field(default_factory=list)       # action kinds run (sequence expanded)


@dataclass
class Scenario:
    name: str               # the plan's trigger name
    alert: str
    action: str
    kind: str
    faults: list[dict]      # POST /-/faults bodies for the canary sandbox
    describe: str           # what the fault is, for people
    endpoint: str | None    # the endpoint the fault hits (None: all, or none)
    warmup: float = 0.0     # seconds of clean probing the trigger needs in its window first
    hold: float = 0.0       # the trigger's `for`
    stop_exporter: bool = False
    note: str = ""
    infeasible: str = ""    # why these settings cannot demonstrate the trigger
    traffic: bool = False   # simulated users run while it does (a traffic trigger judges them)
    expected: Expected = field(default_factory=Expected)

    @property
    def slow(self) -> bool:
        return self.hold > 60


def expected_effects(plan: Plan, action: str, endpoint: str | None) -> Expected:
    out = Expected()
    act = plan.actions.get(action)
    steps = [plan.actions[s] for s in act.steps] if isinstance(act, Sequence) else [act]
    for step in steps:
        if isinstance(step, KubectlRollback):
            out.rollbacks += 1
            out.kinds.append("kubectl_rollback")
        elif isinstance(step, DisableFeature):
            out.kinds.append("disable_feature")
            if step.features == "all":
                out.features += plan.features()
            elif step.features == "alert":
                ep = plan.endpoint(endpoint) if endpoint else None
                out.features += [ep.feature] if ep and ep.feature else []
            else:
                out.features += list(step.features)
        elif isinstance(step, Page | Command | Http):
            out.kinds.append(step.kind)
    out.features = sorted(set(out.features))
    return out


def fault_endpoint(plan: Plan) -> str:
    """The endpoint the single-endpoint faults hit: the first one with a feature flag."""
    return next((e.name for e in plan.endpoints if e.feature), plan.endpoints[0].name)


def warmup_seconds(plan: Plan, trigger: Trigger) -> float:
    """Clean probing a ratio trigger needs before its min_probes guard lets it fire; for a
    traffic trigger, the users' requests that fill its window."""
    prom = plan.prometheus
    if trigger.source == "traffic":
        return plan.trigger_window(trigger) + prom.scrape_interval + prom.evaluation_interval
    if trigger.kind not in ("error_rate", "availability"):
        return 0.0
    series = len(plan.endpoints) if trigger.kind == "availability" else 1
    probes = plan.min_probes(trigger) / series
    return probes * plan.probe.interval + prom.scrape_interval + prom.evaluation_interval


def build(plan: Plan) -> list[Scenario]:
    """The scenarios for the plan's triggers, in plan order (custom triggers are skipped)."""
    ep = fault_endpoint(plan)
    out = []
    for trig in plan.triggers:
        if trig.kind not in SUPPORTED:
            continue
        s = _scenario(plan, trig, ep)
        s.expected = expected_effects(plan, trig.action, s.endpoint)
        s.warmup = warmup_seconds(plan, trig)
        s.hold = trig.for_
        out.append(s)
    return out


def _scenario(plan: Plan, trig: Trigger, ep: str) -> Scenario:
    window = format_duration(plan.trigger_window(trig))
    base: dict[str, Any] = {"name": trig.name, "alert": trig.alert, "action": trig.action, "kind": trig.kind}
    if trig.source == "traffic":
        return _traffic_scenario(plan, trig, ep, base)
    if trig.kind == "error_rate":
        return Scenario(
            **base, endpoint=ep, faults=[{"endpoint": ep, "mode": "error"}],
            describe=f"every request to {ep} answers HTTP 500",
            note=(f"one endpoint failing is also {100 // len(plan.endpoints)}% of the track's probes, so "
                  "the availability trigger fires as well: the webhook's cooldown keeps it to one rollback"),
        )
    if trig.kind == "latency_avg":
        thr = trig.threshold or 1.0
        timeout = plan.endpoint_timeout(plan.endpoint(ep) or plan.endpoints[0])
        ceiling = 0.9 * timeout  # an answer slower than the timeout is an error, not a latency
        latency_ms = math.ceil(1000 * min(1.5 * thr, (thr + ceiling) / 2))
        note = ""
        if trig.for_:
            note = (f"the average must stay above {_secs(thr)} for {format_duration(trig.for_)} "
                    "(`for`) before this trigger fires")
        infeasible = ""
        if latency_ms / 1000 <= thr * 1.02:
            infeasible = (f"the probe timeout ({_secs(timeout)}) leaves no room above the "
                          f"latency threshold ({_secs(thr)}): a slower answer is a timeout (an error), "
                          "not a latency sample, so this trigger cannot fire with these settings; "
                          "raise demo.probe_timeout well above the threshold")
        return Scenario(
            **base, endpoint=ep, faults=[{"endpoint": ep, "mode": "slow", "latency_ms": latency_ms}],
            describe=f"{ep} answers after {latency_ms} ms", note=note, infeasible=infeasible,
        )
    if trig.kind == "availability":
        # One failed probe per endpoint: each endpoint's error rate stays at 1 in its window
        # (1/50 = 2% at most, which does not exceed the 2% threshold), while the track loses
        # one probe per endpoint in its window, well below 99.5%.
        faults = [{"endpoint": e.name, "mode": "error", "count": 1} for e in plan.endpoints]
        return Scenario(
            **base, endpoint=None, faults=faults,
            describe=f"one request to each of the {len(plan.endpoints)} endpoints answers HTTP 500",
            note=(f"one failure per endpoint: no endpoint's error rate crosses its threshold, "
                  f"while the track's availability over {window} drops below "
                  f"{(trig.threshold or 0) * 100:g}%"),
        )
    if trig.kind == "null_streak":
        streak = int(trig.threshold or 0) + 1
        return Scenario(
            **base, endpoint=ep, faults=[{"endpoint": ep, "mode": "null"}],
            describe=f"{ep} answers 200 with a null body ({streak} in a row fire the trigger)",
            note=("null answers also lower the track's availability, so the availability trigger "
                  "may fire first; the webhook's cooldown keeps it to one rollback"),
        )
    if trig.kind == "pii_exposure":
        return Scenario(
            **base, endpoint=ep, faults=[{"endpoint": ep, "mode": "pii"}],
            describe=f"{ep} answers with an unredacted e-mail, SSN, phone and card number",
        )
    # probes_missing
    return Scenario(
        **base, endpoint=None, faults=[], stop_exporter=True,
        describe="the exporter is stopped: Prometheus has nothing to scrape",
        note="no data is not a failure: this pages, it never rolls back",
    )


def _traffic_scenario(plan: Plan, trig: Trigger, ep: str, base: dict) -> Scenario:
    """Simulated users on both tracks; a share of the canary's requests fails (2.5x the
    margin: 5% at a 2% threshold), or its answers slow down."""
    window = format_duration(plan.trigger_window(trig))
    users = (f"{plan.demo.traffic_rate:g} requests/s of simulated users, "
             f"{plan.demo.traffic_canary_percent:g}% to the canary")
    if trig.kind == "latency_avg":
        thr = trig.threshold or 1.0
        latency_ms = math.ceil(1500 * thr)
        held = f" for {format_duration(trig.for_)}" if trig.for_ else ""
        return Scenario(
            **base, endpoint=ep, faults=[{"endpoint": ep, "mode": "slow", "latency_ms": latency_ms}],
            describe=f"{ep} answers its users after {latency_ms} ms ({users})", traffic=True,
            note=f"the average of {ep}'s requests over {window} must stay above {_secs(thr)}{held}")
    margin = (trig.threshold or 0.02) if trig.kind == "error_rate" else 1 - (trig.threshold or 0.995)
    rate = round(min(2.5 * margin, 1.0), 4)
    if trig.kind == "error_rate":
        return Scenario(
            **base, endpoint=ep, faults=[{"endpoint": ep, "mode": "error", "rate": rate}],
            describe=f"{rate * 100:g}% of the canary's requests to {ep} answer HTTP 500 ({users})",
            traffic=True,
            note=(f"{rate * 100:g}% failures over {window} of user traffic; the probes see the same "
                  "share, but far fewer requests: the traffic trigger decides first"))
    # availability: the same small share on every endpoint, each below its error-rate threshold
    return Scenario(
        **base, endpoint=None, faults=[{"endpoint": e.name, "mode": "error", "rate": rate}
                                       for e in plan.endpoints],
        describe=f"{rate * 100:g}% of the canary's requests to every endpoint answer HTTP 500 ({users})",
        traffic=True,
        note=f"no endpoint's error rate crosses its threshold; the track's availability over {window} does")


def _secs(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else format_duration(seconds)


def select(plan: Plan, name: str | None = None,
           include_slow: bool = False) -> tuple[list[Scenario], list[str]]:
    """The scenarios to run and, for people, why any were left out."""
    all_ = build(plan)
    skipped = [t.name for t in plan.triggers if t.kind not in SUPPORTED]
    notes = [f"{n}: a custom trigger (raw PromQL) has no generic fault; skipped" for n in skipped]
    notes += [f"{s.name}: cannot run: {s.infeasible}" for s in all_ if s.infeasible]
    runnable = [s for s in all_ if not s.infeasible]
    if name:
        chosen = [s for s in all_ if s.name == name]
        if not chosen:
            names = ", ".join(s.name for s in all_)
            raise ValueError(f"no scenario {name!r} (scenarios: {names})")
        if chosen[0].infeasible:
            raise ValueError(f"{name}: {chosen[0].infeasible}")
        return chosen, notes
    # quick ones first while the ratio windows warm up; the ones that disable every feature
    # or stop the exporter (both leave a gap in the counted probes) next, a long `for` last
    runnable.sort(key=lambda s: (s.slow, s.stop_exporter, bool(s.expected.features), s.warmup > 0))
    if include_slow:
        return runnable, notes
    for s in runnable:
        if s.slow:
            notes.append(f"{s.name}: needs its `for` of {format_duration(s.hold)} to pass; left out "
                         f"(run it with --scenario {s.name} or --all)")
    return [s for s in runnable if not s.slow], notes
