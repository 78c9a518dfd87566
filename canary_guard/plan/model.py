"""The plan: every section together, the checks that span sections, and derived values."""

from __future__ import annotations

import math
from typing import Literal

import yaml
from pydantic import Field, model_validator

from canary_guard.durations import format_duration, human_seconds

from . import notify as notify_section
from . import rollout as rollout_section
from . import shared_cause as shared_cause_section
from . import traffic as traffic_section
from .actions import Action, DisableFeature, Page, Sequence
from .base import Model, Name, Url
from .notify import Notify
from .rollout import Rollout
from .sections import (
    Alertmanager,
    Analysis,
    Auth,
    Criteria,
    Demo,
    Endpoint,
    Phase,
    Probe,
    Prometheus,
    RateLimits,
    Target,
    Webhook,
)
from .shared_cause import SharedCause
from .traffic import Traffic
from .triggers import CLEAR_SHARE, KEEP_FIRING_DEFAULTS, LATENCY_MIN_PROBES, Trigger


class Plan(Model):
    version: Literal[1] = 1
    name: Name
    service: str
    description: str = ""
    runbook_url: Url = "https://github.com/canary-guard/canary-guard/blob/main/docs/runbook.md"
    targets: list[Target] = Field(min_length=1)
    auth: Auth = Field(default_factory=Auth)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    probe: Probe = Field(default_factory=Probe)
    endpoints: list[Endpoint] = Field(min_length=1)
    slos: Criteria = Field(default_factory=Criteria)
    triggers: list[Trigger] = Field(default_factory=list)
    actions: dict[Name, Action] = Field(default_factory=dict)
    phases: list[Phase] = Field(default_factory=list)
    prometheus: Prometheus = Field(default_factory=Prometheus)
    alertmanager: Alertmanager = Field(default_factory=Alertmanager)
    webhook: Webhook = Field(default_factory=Webhook)
    demo: Demo = Field(default_factory=Demo)
    analysis: Analysis = Field(default_factory=Analysis)
    notify: Notify = Field(default_factory=Notify)
    rollout: Rollout | None = None
    shared_cause: SharedCause = Field(default_factory=SharedCause)
    traffic: Traffic | None = None  # the service's own request metrics (traffic triggers)

    # -- cross-field checks: each raises with the path of the offending field ------------

    @model_validator(mode="after")
    def _references(self) -> Plan:
        problems: list[str] = []
        problems += _duplicates("targets", [t.name for t in self.targets])
        problems += _duplicates("endpoints", [e.name for e in self.endpoints])
        problems += _duplicates("triggers", [t.name for t in self.triggers])
        problems += _duplicates("phases", [p.name for p in self.phases])
        track_names = {t.name for t in self.targets}
        if self.analysis.baseline and self.analysis.baseline not in track_names:
            problems.append(f"analysis.baseline: no target named {self.analysis.baseline!r}")
        for i, trig in enumerate(self.triggers):
            problems += self._trigger_problems(i, trig, track_names)
        for name, action in self.actions.items():
            problems += self._action_problems(name, action)
        problems += notify_section.problems(self)
        problems += rollout_section.problems(self)
        problems += shared_cause_section.problems(self)
        problems += traffic_section.problems(self)
        if self.triggers and not self.guarded_tracks():
            problems.append("targets: no target is guarded: rollback triggers would watch nothing")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _trigger_problems(self, i: int, trig: Trigger, track_names: set[str]) -> list[str]:
        """What is wrong with triggers[i] against the rest of the plan."""
        out: list[str] = []
        scrape = self.prometheus.scrape_interval
        if trig.action not in self.actions:
            known = ", ".join(sorted(self.actions)) or "none"
            out.append(
                f"triggers[{i}].action: {trig.action!r} is not defined in actions "
                f"(defined: {known})"
            )
        for j, track in enumerate(trig.tracks or []):
            if track not in track_names:
                out.append(f"triggers[{i}].tracks[{j}]: no target named {track!r}")
        if trig.baseline not in ("auto", "none"):
            if trig.baseline not in track_names:
                out.append(f"triggers[{i}].baseline: no target named {trig.baseline!r}")
            elif trig.baseline in self.trigger_tracks(trig):
                out.append(f"triggers[{i}].baseline: {trig.baseline!r} is a track this "
                           "trigger watches; the baseline must be another track")
        if trig.source == "traffic" and self.traffic is None:
            out.append(f"triggers[{i}].source: 'traffic' needs the plan's traffic section "
                       "(the service's request metrics)")
        if trig.window is not None and trig.window < scrape:
            out.append(
                f"triggers[{i}].window: {format_duration(trig.window)} is shorter than "
                f"prometheus.scrape_interval ({format_duration(scrape)})"
            )
        if trig.window is not None and trig.window < 2 * self.probe.interval and trig.kind in (
            "error_rate",
            "availability",
            "latency_avg",
        ) and trig.source == "probe":
            out.append(
                f"triggers[{i}].window: {format_duration(trig.window)} holds fewer than "
                f"two probes at probe.interval {format_duration(self.probe.interval)}"
            )
        out += _trigger_reach(self, i, trig)
        return out

    def _action_problems(self, name: str, action: Action) -> list[str]:
        """What is wrong with actions.<name> against the other actions and the endpoints."""
        out: list[str] = []
        if isinstance(action, Sequence):
            for j, step in enumerate(action.steps):
                if step not in self.actions:
                    out.append(f"actions.{name}.steps[{j}]: no action named {step!r}")
                elif isinstance(self.actions[step], Sequence):
                    out.append(
                        f"actions.{name}.steps[{j}]: {step!r} is a sequence; "
                        "sequences do not nest"
                    )
        if isinstance(action, DisableFeature) and isinstance(action.features, list):
            features = {e.feature for e in self.endpoints if e.feature}
            for j, feat in enumerate(action.features):
                if feat not in features:
                    out.append(
                        f"actions.{name}.features[{j}]: {feat!r} is no endpoint's feature"
                    )
        return out

    # -- derived values ----------------------------------------------------------------

    def guarded_tracks(self) -> list[str]:
        return [t.name for t in self.targets if t.guarded]

    def trigger_tracks(self, trigger: Trigger) -> list[str]:
        return list(trigger.tracks) if trigger.tracks else self.guarded_tracks()

    def baseline_track(self) -> str | None:
        """The plan's baseline: analysis.baseline, else the first target that is not guarded."""
        if self.analysis.baseline:
            return self.analysis.baseline
        return next((t.name for t in self.targets if not t.guarded), None)

    def trigger_baseline(self, trigger: Trigger) -> str | None:
        """The track a trigger compares with, or None when it judges its tracks alone."""
        if trigger.baseline == "none" or trigger.kind in ("probes_missing", "custom"):
            return None
        name = self.baseline_track() if trigger.baseline == "auto" else trigger.baseline
        return None if name in self.trigger_tracks(trigger) else name

    def baseline_grace(self) -> float:
        """How late the baseline may show the same breach as the guarded track and still count
        as "at the same time": the probes of the two tracks land up to one probe interval
        apart, Prometheus sees them up to a scrape later, and the rules a little after that.
        A baseline-aware rollback waits this long (its ``for`` is at least this), and a
        baseline breach this recent still blocks one."""
        return self.probe.interval + self.prometheus.scrape_interval + self.prometheus.evaluation_interval

    def trigger_for(self, trigger: Trigger) -> float:
        """The alert's ``for``: the trigger's, and for a baseline-aware one at least the grace
        in which the baseline may show the same breach (then it is a shared cause)."""
        if self.trigger_baseline(trigger) is None:
            return trigger.for_
        return max(trigger.for_, self.baseline_grace())

    def keep_firing_for(self, trigger: Trigger) -> float:
        """Seconds the trigger's alert keeps firing after its condition clears."""
        if trigger.keep_firing_for is not None:
            return trigger.keep_firing_for
        return KEEP_FIRING_DEFAULTS.get(trigger.kind, 0.0)

    def latency_clear(self, trigger: Trigger) -> float:
        """latency_avg: the average at or below which a firing alert resolves (hysteresis)."""
        assert trigger.threshold is not None
        return trigger.clear if trigger.clear is not None else CLEAR_SHARE * trigger.threshold

    def shared_cause_alert(self) -> str | None:
        """The shared-cause alert's name, when a trigger compares with a baseline (else None)."""
        return self.shared_cause.alert if any(self.trigger_baseline(t) for t in self.triggers) else None

    def shared_cause_action(self) -> str | None:
        """The action that pages a shared cause: the plan's, else its first page action."""
        if self.shared_cause.action is not None:
            return self.shared_cause.action
        return next((n for n, a in self.actions.items() if isinstance(a, Page)), None)

    def endpoint_timeout(self, endpoint: Endpoint) -> float:
        """The probe timeout of one endpoint: its own, else probe.timeout."""
        return endpoint.timeout if endpoint.timeout is not None else self.probe.timeout

    def max_probe_timeout(self) -> float:
        """The longest any probe may take (the probes_missing arithmetic needs it)."""
        return max(self.endpoint_timeout(e) for e in self.endpoints)

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def features(self) -> list[str]:
        """Every endpoint's feature-flag name, in plan order, without repeats."""
        return list(dict.fromkeys(e.feature for e in self.endpoints if e.feature))

    def min_probes(self, trigger: Trigger) -> int:
        """Probes a ratio trigger needs in its window before it may fire.

        With fewer than ceil(1/margin) probes (margin: the error-rate threshold, or
        1 - the availability threshold) a single failed probe already breaches the
        threshold on its own, so one unlucky probe would roll the release back. From
        ceil(1/margin) probes on, it takes at least two failures. Error rate counts the
        probes of one endpoint; availability those of the whole track.
        """
        if trigger.min_probes is not None:
            return trigger.min_probes
        if trigger.kind == "error_rate" and trigger.threshold:
            return math.ceil(round(1 / trigger.threshold, 9))
        if trigger.kind == "availability" and trigger.threshold:
            return math.ceil(round(1 / (1 - trigger.threshold), 9))
        return 1

    def trigger_window(self, trigger: Trigger) -> float:
        """The range, in seconds, a trigger's rule looks back over.

        An explicit ``window`` wins. Otherwise ratio triggers get a window long enough to
        hold 1.5x their minimum probe count at the plan's probe rate (error rate is judged
        per endpoint, availability per track across all endpoints), and the others a short
        window of four scrapes or two probes; a latency average at least LATENCY_MIN_PROBES
        probes of the endpoint. Never less than four scrape intervals, so that rate() always
        has samples to work with.
        """
        if trigger.window is not None:
            return trigger.window
        if trigger.source == "traffic" and self.traffic is not None:
            # requests arrive continuously: the window needs only scrapes for rate()
            return traffic_section.default_window(self)
        floor = max(4 * self.prometheus.scrape_interval, 2 * self.probe.interval)
        if trigger.kind == "latency_avg":  # an average of a handful of probes is noise
            return float(math.ceil(max(floor, LATENCY_MIN_PROBES * self.probe.interval)))
        if trigger.kind in ("error_rate", "availability"):
            series = len(self.endpoints) if trigger.kind == "availability" else 1
            need = 1.5 * self.min_probes(trigger) * self.probe.interval / series
            return float(math.ceil(max(need, floor)))
        return float(math.ceil(floor))

    def windows(self) -> list[float]:
        """Every distinct range the rules need: each trigger's window and each gate window."""
        # traffic triggers' windows are recorded from the service's metrics (rules/traffic.py)
        out = {self.trigger_window(t) for t in self.triggers if t.kind != "custom" and t.source == "probe"}
        out.add(self.slos.window)
        out.update(ph.criteria.window for ph in self.phases)
        return sorted(out)

    def probes_in_window(self, window: float) -> float:
        return window / self.probe.interval

    def probe_rate_per_hour(self) -> float:
        """Requests per hour that the exporter sends to one target."""
        return len(self.endpoints) * 3600 / self.probe.interval

    def trigger_warnings(self) -> list[str]:
        """Triggers that look unreachable but are allowed (demo settings produce them)."""
        out = []
        fd = format_duration
        for i, trig in enumerate(self.triggers):
            # probe timeouts cut probes only: the service's own latency has no such ceiling
            if trig.kind != "latency_avg" or not trig.threshold or trig.source != "probe":
                continue
            thr = trig.threshold
            own = [e for e in self.endpoints if e.timeout is not None]
            if thr >= self.probe.timeout and len(own) < len(self.endpoints):
                but = f" (every endpoint but {', '.join(e.name for e in own)}, which have their own)" \
                    if own else ""
                out.append(
                    f"triggers[{i}].threshold: {fd(thr)} is not below probe.timeout "
                    f"({fd(self.probe.timeout)}): probes are cut off at the timeout, so the average "
                    f"latency never exceeds it and this trigger never fires{but}"
                )
            cut = [e.name for e in own if e.timeout is not None and thr >= e.timeout]
            if cut:
                out.append(
                    f"triggers[{i}].threshold: {fd(thr)} is not below the own probe timeout of "
                    f"{', '.join(cut)}: probes are cut off at the timeout, so this trigger never "
                    "fires for them"
                )
        return out

    def timeout_warnings(self) -> list[str]:
        """Endpoints whose learned latency comes close to their timeout or a latency trigger.

        A healthy answer slower than the timeout counts as an error: a p99 above half the
        timeout leaves too little room on a busier machine. Checked for the plan's own
        settings and for its demo settings (whose probe_timeout replaces probe.timeout).
        """
        out = []
        demo_timeout = self.demo.probe_timeout
        for i, ep in enumerate(self.endpoints):
            seen = ep.learned
            if seen is None:
                continue
            where = f"endpoints[{i}].timeout"
            fd = format_duration
            limits = [("", self.endpoint_timeout(ep))]
            if ep.timeout is None and demo_timeout != self.probe.timeout:
                limits.append((" under the demo settings (demo.probe_timeout)", demo_timeout))
            for setting, limit in limits:
                if seen.max >= limit or 2 * seen.p99 > limit:
                    what = (f"the learned max ({human_seconds(seen.max)})" if seen.max >= limit
                            else f"the learned p99 ({human_seconds(seen.p99)})")
                    out.append(
                        f"{where}: {what} of {ep.name} is close to its probe timeout "
                        f"({fd(limit)}){setting}: a healthy answer that takes longer counts as an "
                        f"error; set {where} to at least {fd(suggest_timeout(seen.p99, seen.max))}"
                    )
            for j, trig in enumerate(self.triggers):
                if trig.kind == "latency_avg" and trig.threshold and seen.p95 >= trig.threshold \
                        and trig.source == "probe":
                    out.append(
                        f"triggers[{j}].threshold: {ep.name}'s learned p95 ({human_seconds(seen.p95)}) is "
                        f"not below {human_seconds(trig.threshold)}: the average of a few healthy probes of "
                        f"{ep.name} can cross it"
                    )
        return out

    def budget_warnings(self) -> list[str]:
        """Where the probe schedule exceeds the service's documented rate limits."""
        limits, out = self.rate_limits, []
        per_endpoint_minute = 60 / self.probe.interval
        if limits.per_endpoint_per_minute and per_endpoint_minute > limits.per_endpoint_per_minute:
            out.append(
                f"probe.interval: {per_endpoint_minute:.0f} probes/min per endpoint exceed "
                f"rate_limits.per_endpoint_per_minute ({limits.per_endpoint_per_minute})"
            )
        hourly = self.probe_rate_per_hour()
        if limits.total_per_hour and hourly > limits.total_per_hour:
            out.append(
                f"probe.interval: {hourly:.0f} probes/hour per target exceed "
                f"rate_limits.total_per_hour ({limits.total_per_hour})"
                + ("; the plan says the probe's key is exempt" if limits.probe_exempt else
                   "; exempt the probe's API key or raise probe.interval")
            )
        return out

    def to_yaml(self) -> str:
        """The plan as YAML that load_plan reads back to an equal plan (durations in seconds)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)

    def with_demo_settings(self) -> Plan:
        """The plan with the fast demo settings applied (probe, scrape, eval, group_wait)."""
        d = self.demo
        return self.model_copy(
            update={
                "probe": self.probe.model_copy(
                    update={"interval": d.probe_interval, "timeout": d.probe_timeout}
                ),
                "prometheus": self.prometheus.model_copy(
                    update={
                        "scrape_interval": d.scrape_interval,
                        "evaluation_interval": d.evaluation_interval,
                    }
                ),
                "alertmanager": self.alertmanager.model_copy(
                    update={"group_wait": d.group_wait, "group_interval": d.group_interval}
                ),
                "slos": self.slos.model_copy(update={"window": d.gate_window}),
                "webhook": self.webhook.model_copy(update={"cooldown": d.cooldown}),
                "traffic": self.traffic and self.traffic.model_copy(
                    update={"window": d.traffic_window}),
                "phases": [
                    ph.model_copy(
                        update={"criteria": ph.criteria.model_copy(update={"window": d.gate_window})}
                    )
                    for ph in self.phases
                ],
            }
        )


def _trigger_reach(plan: Plan, i: int, trig: Trigger) -> list[str]:
    """A trigger that can never fire, or always fires, given the probe and scrape rates."""
    out: list[str] = []
    fd, scrape, probe = format_duration, plan.prometheus.scrape_interval, plan.probe
    if trig.kind == "custom":
        return out
    window = plan.trigger_window(trig)
    rate_based = trig.kind in ("error_rate", "availability", "latency_avg", "pii_exposure")
    if rate_based and trig.window is not None and scrape <= trig.window < 2 * scrape:
        out.append(
            f"triggers[{i}].window: {fd(window)} holds fewer than two scrapes at "
            f"prometheus.scrape_interval {fd(scrape)}: rate() needs two samples, so this trigger "
            f"never fires; use at least {fd(2 * scrape)}"
        )
    if trig.kind in ("error_rate", "availability") and trig.source == "probe":
        series = len(plan.endpoints) if trig.kind == "availability" else 1
        capacity = window / probe.interval * series
        need = plan.min_probes(trig)
        if need > capacity + 1e-9:
            field = "min_probes" if trig.min_probes is not None else "window"
            whose = "of one endpoint" if series == 1 else f"of the track's {series} endpoints"
            out.append(
                f"triggers[{i}].{field}: min_probes is {need} but the {fd(window)} window holds at "
                f"most {capacity:g} probes {whose} at probe.interval {fd(probe.interval)}, so this "
                f"trigger never fires; set window to at least "
                f"{fd(math.ceil(need * probe.interval / series))} or lower min_probes"
            )
    if trig.kind == "pii_exposure" and trig.for_ >= window:
        out.append(
            f"triggers[{i}].for: {fd(trig.for_)} is not shorter than the window {fd(window)}: a "
            f"single exposure leaves the window after {fd(window)}, so it would never fire; use "
            "for: 0s (the default) or a longer window"
        )
    if trig.kind == "probes_missing" and trig.threshold is not None:
        timeout = plan.max_probe_timeout()
        cycle = probe.interval + timeout + scrape
        if trig.threshold <= cycle:
            out.append(
                f"triggers[{i}].threshold: {fd(trig.threshold)} is not above one probe cycle "
                f"(probe.interval {fd(probe.interval)} + the longest probe timeout {fd(timeout)} + "
                f"prometheus.scrape_interval {fd(scrape)} = {fd(cycle)}): the last probe ages past "
                "it between two probes, so this trigger always fires"
            )
    return out


def suggest_timeout(p99: float, slowest: float) -> float:
    """A probe timeout comfortably above an observed tail: 3x the p99 or 2x the slowest answer,
    whichever is more, rounded up (to 100 ms below 1 s, to 500 ms above), at least 1 s."""
    need = max(3 * p99, 2 * slowest, 1.0)
    step = 0.5 if need >= 1 else 0.1
    return round(math.ceil(round(need / step, 9)) * step, 3)


def _duplicates(field: str, names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        if name in seen:
            out.append(f"{field}[{i}].name: {name!r} repeats {field}[{seen[name]}]")
        seen.setdefault(name, i)
    return out
