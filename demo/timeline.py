"""Run one scenario against a running stack and print what happened, second by second.

Every ~0.25 s it reads the exporter's /metrics, Prometheus' and Alertmanager's alerts, the
webhook's audit trail, the kubectl stand-in's record and the canary's feature flags, and
prints each change with the seconds since the fault was injected:

     0.0s  fault injected: continual_learning answers 200 with a null body
     0.9s  exporter: first bad probe (null) of canary/continual_learning
     ...
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .scenarios import Scenario
from .stack import Stack

Out = Callable[[str], object]  # where a scenario's lines go (print, or a test's list.append)

POLL = 0.25
RAN = ("succeeded", "partial", "failed")  # run statuses of an action that did run


@dataclass
class Result:
    scenario: str
    alert: str
    action: str
    ok: bool = False
    alerts_seen: list[str] = field(default_factory=list)
    fault_at: float = 0.0                 # epoch seconds
    action_at: float | None = None        # epoch seconds the action finished (first one)
    action_alert: str | None = None       # the alert whose notification ran it
    resolved: bool = False
    rollbacks: int = 0
    disabled: list[str] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)

    @property
    def seconds_to_action(self) -> float | None:
        return None if self.action_at is None else self.action_at - self.fault_at


_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)', re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def probe_counters(metrics: str, track: str) -> dict[str, float]:
    """Sums of the exporter's bad-probe counters of one track: by outcome, PII, slow probes."""
    out: dict[str, float] = {"error": 0.0, "null": 0.0, "pii": 0.0, "slow": 0.0, "probes": 0.0}
    slow_total = slow_fast = 0.0
    for name, labels, value in _SAMPLE.findall(metrics):
        lab = dict(_LABEL.findall(labels))
        if lab.get("track") != track:
            continue
        v = float(value)
        if name == "canary_probes_total":
            out["probes"] += v
            if lab.get("outcome") in ("error", "null"):
                out[lab["outcome"]] += v
        elif name == "canary_probe_pii_exposures_total":
            out["pii"] += v
        elif name == "canary_probe_duration_seconds_count":
            slow_total += v
        elif name == "canary_probe_duration_seconds_bucket" and lab.get("le") in ("1", "1.0"):
            slow_fast += v
    out["slow"] = slow_total - slow_fast
    return out


def failed_requests(metrics: str) -> float:
    """Failed requests a sandbox counted itself (its users' and the probes')."""
    return sum(float(value) for name, labels, value in _SAMPLE.findall(metrics)
               if name == "recoveryos_requests_total" and 'status="error"' in labels)


class Watcher:
    """Reads the stack's state and reports what changed since the last look."""

    def __init__(self, stack: Stack, track: str, traffic: bool = False):
        self.stack = stack
        self.track = track
        self.traffic = traffic
        self.failed = self._failed()
        self.prom: dict[tuple, str] = {}
        self.am: set[tuple] = set()
        self.action_ids: set = {a["id"] for a in self._actions()}
        self.notified: set = set(self.action_ids)
        self.kubectl_seen = len(stack.kubectl_calls())
        self.disabled = set(self._disabled())
        self.counters = self._counters()
        self.first_bad_seen = False
        self.slack_seen = len(stack.slack.messages) if stack.slack else 0
        self.mail_seen = len(stack.smtp.messages) if stack.smtp else 0
        self.ever_alerts: set[str] = set()

    def _actions(self) -> list[dict]:
        try:
            return self.stack.actions()
        except OSError:
            return []  # the webhook is down (the restart scenario) or busy

    def _disabled(self) -> list[str]:
        try:
            return self.stack.disabled_features()
        except OSError:
            return []

    def _counters(self) -> dict[str, float] | None:
        try:
            return probe_counters(self.stack.exporter_metrics(), self.track)
        except OSError:
            return None

    def _failed(self) -> float | None:
        if not self.traffic:
            return None
        try:
            return failed_requests(self.stack.service_metrics(self.track))
        except OSError:
            return None

    def poll(self) -> list[str]:
        """Human-readable lines for everything that changed, in the order the loop runs."""
        return (self._service_lines() + self._exporter_lines() + self._prometheus_lines()
                + self._alertmanager_lines() + self._webhook_lines() + self._people()
                + self._kubectl_lines() + self._sandbox_lines())

    def _service_lines(self) -> list[str]:
        """The service's own counters: its users' first failed requests."""
        lines: list[str] = []
        failed = self._failed()
        if failed is not None and self.failed is not None and failed > self.failed:
            lines.append(f"service: first failed requests of users on {self.track} "
                         f"({failed - self.failed:g} in its own counters)")
            self.traffic = False  # once
        return lines

    def _exporter_lines(self) -> list[str]:
        """The exporter's counters: the first bad probe outcome."""
        lines: list[str] = []
        counters = self._counters()
        if counters and self.counters and not self.first_bad_seen:
            for kind, text in (("error", "error"), ("null", "null"), ("pii", "PII exposure"),
                               ("slow", "slower than 1s")):
                if counters[kind] > self.counters[kind]:
                    self.first_bad_seen = True
                    lines.append(f"exporter: first bad probe outcome on {self.track}: {text}")
                    break
        if counters is not None and (self.counters is None or counters["probes"] < self.counters["probes"]):
            self.counters = counters  # exporter restarted: counters start again from 0
        return lines

    def _prometheus_lines(self) -> list[str]:
        """Alerts that changed state in Prometheus, one line per alert and state."""
        lines: list[str] = []
        try:
            alerts = self.stack.prometheus_alerts()
        except OSError:
            alerts = []
        now: dict[tuple, str] = {}
        for a in alerts:
            lab = a.get("labels", {})
            key = (lab.get("alertname"), lab.get("track", ""), lab.get("endpoint", ""))
            now[key] = a.get("state", "")
        changed: dict[tuple[str, str], list[tuple]] = {}  # (alertname, state) -> series
        for key, state in now.items():
            if self.prom.get(key) != state:
                changed.setdefault((key[0], state), []).append(key)
                self.ever_alerts.add(key[0])
        for key in self.prom.keys() - now.keys():
            changed.setdefault((key[0], "resolved"), []).append(key)
        for (name, state), keys in changed.items():
            where = ["/".join(k for k in key[1:] if k) for key in keys]
            if len(keys) == 1:
                value = _value(alerts, keys[0])
                lines.append(f"prometheus: {name} {state}" + (f" ({where[0]})" if where[0] else "")
                             + (f" value={value}" if value else ""))
            else:
                shown = ", ".join(sorted(w for w in where if w)[:3])
                more = "..." if len(keys) > 3 else ""
                lines.append(f"prometheus: {name} {state} ({len(keys)} series: {shown}{more})")
        self.prom = now
        return lines

    def _alertmanager_lines(self) -> list[str]:
        """Alerts Alertmanager newly holds active."""
        lines: list[str] = []
        try:
            am_now = {(a["labels"].get("alertname"), a["labels"].get("track", ""),
                       a["labels"].get("endpoint", "")) for a in self.stack.alertmanager_alerts()
                      if a.get("status", {}).get("state") == "active"}
        except (OSError, KeyError, TypeError):
            am_now = self.am
        for name in sorted({k[0] for k in am_now - self.am}):
            n = len([k for k in am_now - self.am if k[0] == name])
            lines.append(f"alertmanager: {name} active" + (f" ({n} series)" if n > 1 else "")
                         + ", routed to the webhook and the people")
        self.am = am_now
        return lines

    def _webhook_lines(self) -> list[str]:
        """The webhook's runs: each notification once, each outcome once."""
        lines: list[str] = []
        for rec in self._actions():
            if rec["id"] in self.action_ids:
                continue
            if rec["id"] not in self.notified:
                self.notified.add(rec["id"])
                lines.append(f"webhook: notification received for {alertname(rec) or '?'}: "
                             f"run {rec['id']} ({rec['action']}) {rec['status']}")
            if _final(rec):  # its outcome, once
                self.action_ids.add(rec["id"])
                lines.append("webhook: " + describe_action(rec))
        return lines

    def _kubectl_lines(self) -> list[str]:
        """What the kubectl stand-in recorded since the last poll."""
        lines: list[str] = []
        calls = self.stack.kubectl_calls()
        for call in calls[self.kubectl_seen:]:
            lines.append("kubectl stand-in recorded: kubectl " + " ".join(call["argv"]))
        self.kubectl_seen = len(calls)
        return lines

    def _sandbox_lines(self) -> list[str]:
        """Features the sandbox disabled or enabled again."""
        lines: list[str] = []
        disabled = set(self._disabled())
        if disabled - self.disabled:
            lines.append(f"sandbox: features disabled on {self.stack.canary_track}: "
                         + ", ".join(sorted(disabled - self.disabled)))
        if self.disabled - disabled:
            lines.append("sandbox: features enabled again: " + ", ".join(sorted(self.disabled - disabled)))
        self.disabled = disabled
        return lines

    def _people(self) -> list[str]:
        """What reached the people: Slack messages in full (what a person reads), e-mails by subject."""
        lines: list[str] = []
        if self.stack.slack:
            new = self.stack.slack.since(self.slack_seen)
            self.slack_seen += len(new)
            for msg in new:
                lines.append(f"{msg.channel} <- {msg.title}")
                lines += [f"    | {line}" for line in msg.text.strip().splitlines()
                          if line.startswith(PERSON_LINES)]
        if self.stack.smtp:
            new = self.stack.smtp.since(self.mail_seen)
            self.mail_seen += len(new)
            lines += [f"{msg.channel} <- {msg.title}" for msg in new]
        return lines

    def firing(self, track_only: bool = True, lingering: frozenset[str] = frozenset()) -> list[tuple]:
        """Active alerts (of the watched track), but those meant to keep firing after the fault."""
        return [k for k, s in self.prom.items()
                if (not track_only or k[1] in ("", self.track)) and k[0] not in lingering]


# the lines of a notification a person acts on (rules/notify.py writes them)
PERSON_LINES = ("FIRING", "RESOLVED", "Track:", "Measured:", "Webhook action:", "Incident:", "Runbook:")


def _value(alerts: list[dict], key: tuple) -> str:
    for a in alerts:
        lab = a.get("labels", {})
        if (lab.get("alertname"), lab.get("track", ""), lab.get("endpoint", "")) == key:
            try:
                return f"{float(a.get('value', '')):.4g}"
            except ValueError:
                return ""
    return ""


def _final(rec: dict) -> bool:
    return rec.get("status") not in ("queued", "running")


def alertname(rec: dict) -> str:
    return (rec.get("incident") or {}).get("alertname") or ""


def describe_action(rec: dict) -> str:
    """One line for an audit-trail run: which action, for which alert, what it ran."""
    parts = [f"action {rec['action']} {rec['status']}"]
    if alertname(rec):
        parts.append(f"for {alertname(rec)}")
    ran = []
    for att in rec.get("attempts") or []:
        cmd = att.get("command") or {}
        if "argv" in cmd:
            what = " ".join(cmd["argv"])
        elif "url" in cmd:
            what = f"{cmd.get('method', 'POST')} {cmd['url']} {json.dumps(cmd.get('body'))}"
        else:
            what = att.get("kind", "")
        ran.append(f"{att.get('action')}: {what} -> {att.get('outcome')}")
    if ran:
        parts.append("[" + "; ".join(ran) + "]")
    elif rec.get("reason"):
        parts.append(f"({rec['reason']})")
    return " ".join(parts)


class Printer:
    def __init__(self, out: Out = print, t0: float | None = None):
        self.out = out
        self.t0 = t0 if t0 is not None else time.time()

    def __call__(self, line: str, at: float | None = None) -> float:
        t = (at if at is not None else time.time()) - self.t0
        self.out(f"  {t:7.1f}s  {line}")
        return t


def start_users(stack: Stack, scenario: Scenario, out: Out = print) -> None:
    """Start the simulated users and wait until the trigger's window holds their requests."""
    if stack.components["traffic"].running:
        return
    stack.start_component("traffic")
    out(f"  simulated users started; waiting {scenario.warmup:.0f}s for {scenario.alert}'s window "
        "to fill with their requests")
    time.sleep(scenario.warmup)


def stop_users(stack: Stack, out: Out = print) -> None:
    if "traffic" in stack.components and stack.components["traffic"].running:
        stack.stop_component("traffic")
        out("  simulated users stopped")


def wait_warm(stack: Stack, scenario: Scenario, probing_since: float, out: Out = print) -> None:
    """Sleep until the trigger's window holds the probes its min_probes guard asks for (a
    traffic trigger's users start with its scenario, which waits for them)."""
    if scenario.traffic:
        return
    left = probing_since + scenario.warmup - time.time()
    if left > 0:
        out(f"  waiting {left:.0f}s: {scenario.alert} needs its minimum of clean probes in its window")
        time.sleep(left)


def _fault(stack: Stack, scenario: Scenario, say: Printer, *, inject: bool) -> None:
    """Inject the scenario's fault (or stop the exporter), or clear it again."""
    if scenario.stop_exporter:
        if inject:
            stack.stop_component("exporter")
            say("fault injected: " + scenario.describe)
        else:
            stack.start_component("exporter")
            say("fault cleared: exporter started again")
    elif inject:
        for fault in scenario.faults:
            stack.inject(fault)
        say("fault injected: " + scenario.describe)
    else:
        stack.clear_faults()
        say("fault cleared")


def _first_run(res: Result, ran: list[dict]) -> None:
    """When the first run of the scenario's action finished, and for which alert."""
    first = min(ran, key=lambda a: a["finished_at"] or math.inf)
    res.action_at = first["finished_at"]
    res.action_alert = alertname(first)


def _unmet(scenario: Scenario, res: Result) -> list[str]:
    """What the scenario expected and the run did not show."""
    problems: list[str] = []
    if scenario.alert not in res.alerts_seen:
        problems.append(f"{scenario.alert} never fired")
    if res.rollbacks != scenario.expected.rollbacks:
        problems.append(f"expected {scenario.expected.rollbacks} kubectl call(s), saw {res.rollbacks}")
    missing = set(scenario.expected.features) - set(res.disabled)
    if missing:
        problems.append(f"features not disabled: {', '.join(sorted(missing))}")
    return problems


def run(stack: Stack, scenario: Scenario, *, out: Out = print, timeout: float | None = None,
        resolve_timeout: float = 180.0, lingering: frozenset[str] = frozenset()) -> Result:
    """Inject the scenario's fault, follow it to the action, clear it, follow it to resolution.

    ``lingering``: alerts that keep firing long after their fault by design (keep_firing_for,
    e.g. a PII exposure for 15m): not waited for. The scenario's own alert is added when its
    trigger keeps firing."""
    if scenario.keeps_firing:
        lingering = lingering | {scenario.alert}
    track = stack.canary_track
    res = Result(scenario.name, scenario.alert, scenario.action)
    if scenario.traffic:
        start_users(stack, scenario, out)
    watcher = Watcher(stack, track, traffic=scenario.traffic)
    base_actions = set(watcher.action_ids)
    base_calls = watcher.kubectl_seen
    base_disabled = set(watcher.disabled)
    timeout = timeout or (scenario.hold + 60.0)

    res.fault_at = time.time()
    say = Printer(out, res.fault_at)
    _fault(stack, scenario, say, inject=True)

    deadline = res.fault_at + timeout
    settled_at = None
    while time.time() < deadline:
        for line in watcher.poll():
            say(line)
        new = [a for a in stack_actions(stack) if a.get("id") not in base_actions
               and a["status"] in RAN and a["action"] == scenario.action]
        calls = stack.kubectl_calls()[base_calls:]
        disabled = sorted(set(watcher.disabled) - base_disabled)
        done = bool(new) and len(calls) >= scenario.expected.rollbacks and (
            set(scenario.expected.features) <= set(disabled))
        if done and settled_at is None:
            settled_at = time.time()
        if settled_at and time.time() - settled_at > 2.0:  # catch the alerts that follow
            break
        time.sleep(POLL)
    else:
        res.problems.append(f"no {scenario.action} action within {timeout:.0f}s")

    res.actions = [a for a in stack_actions(stack) if a.get("id") not in base_actions]
    calls = stack.kubectl_calls()[base_calls:]
    res.rollbacks = len(calls)
    res.disabled = sorted(set(watcher.disabled) - base_disabled)
    # the first run of the scenario's action (it may have been asked for by another alert
    # with the same action, e.g. availability, which a failing endpoint also breaks)
    ran = [a for a in res.actions if a["status"] in RAN and a["action"] == scenario.action]
    if ran:
        _first_run(res, ran)
    res.alerts_seen = sorted(watcher.ever_alerts)

    # clear the fault and undo what the action did to the sandbox
    _fault(stack, scenario, say, inject=False)
    if res.disabled:
        stack.enable_features(res.disabled)
        say(f"features enabled again for the next scenario: {', '.join(res.disabled)}")

    # follow the alerts to resolution
    deadline = time.time() + resolve_timeout
    while time.time() < deadline:
        for line in watcher.poll():
            say(line)
        if not watcher.firing(lingering=lingering):
            res.resolved = True
            kept = sorted({k[0] for k in watcher.firing()} & lingering)
            say("all alerts resolved" + (f" ({', '.join(kept)} keeps firing by design: keep_firing_for "
                                         "outlives an outage of the notification path)" if kept else ""))
            break
        time.sleep(POLL)
    else:
        res.problems.append(f"alerts still active after {resolve_timeout:.0f}s: "
                            f"{watcher.firing(lingering=lingering)}")
    if scenario.traffic:
        stop_users(stack, out)
    res.problems += _unmet(scenario, res)
    res.ok = not res.problems
    return res


def stack_actions(stack: Stack) -> list[dict]:
    try:
        return stack.actions()
    except OSError:
        return []
