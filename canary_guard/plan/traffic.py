"""The plan's ``traffic`` section: the service's own request metrics, judged beside the probes.

The service already counts every request it serves, real users' and probes' alike (RecoveryOS:
``recoveryos_requests_total{endpoint, version, env, status}``, a latency histogram and an error
counter). The canary and the stable pods differ only by a pod label, which scraping turns into
a series label (``track``): relabelling in a plain scrape config, ``podTargetLabels`` in a
ServiceMonitor or PodMonitor (``deploy/`` renders both).

Every name here reaches PromQL: metric and label names are checked as Prometheus names, label
values are escaped by the rule generator.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from canary_guard import contract
from canary_guard.durations import format_duration

from .base import Line, Model, Name, PositiveSeconds, _matching

if TYPE_CHECKING:
    from .model import Plan
    from .triggers import Trigger

METRIC_RE = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
LABEL_RE = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# a Kubernetes label key: an optional DNS prefix and a name of at most 63 characters
POD_LABEL_RE = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

MetricName = Annotated[str, Field(max_length=200), _matching(
    METRIC_RE, "a Prometheus metric name (letters, digits, _ and :, not starting with a digit)")]
LabelName = Annotated[str, Field(max_length=200), _matching(
    LABEL_RE, "a Prometheus label name (letters, digits and _, not starting with a digit)")]
PodLabel = Annotated[str, Field(max_length=253), _matching(
    POD_LABEL_RE, "a Kubernetes label key (such as track or app.kubernetes.io/track)")]

# kinds a traffic trigger can be: the ones that judge ratios and latency of requests
TRAFFIC_KINDS: tuple[str, ...] = ("error_rate", "availability", "latency_avg")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class Traffic(Model):
    """Where the service's own request metrics are and what their labels mean."""

    # the Prometheus job that scrapes the service's pods (deploy/ renders it); None: any job
    job: Line | None = None
    # counter of every request served, one series per endpoint and status
    requests: MetricName = contract.SERVICE_REQUESTS
    status_label: LabelName = contract.SERVICE_STATUS
    # values of status_label that mean the request failed (the others succeeded)
    failure: list[Line] = Field(default_factory=lambda: ["error"], min_length=1)
    # latency histogram (without _bucket/_sum/_count); None: no latency from traffic
    duration: MetricName | None = contract.SERVICE_DURATION
    # error counter with the reason of each failure; None: every failure counts
    errors: MetricName | None = contract.SERVICE_ERRORS
    error_type_label: LabelName = contract.SERVICE_ERROR_TYPE
    # error types that say nothing about the release: left out of the ratios like the probes'
    # "disabled" outcome, so that alerts resolve after a feature-flag rollback
    ignored_error_types: list[Line] = Field(default_factory=lambda: [contract.FEATURE_DISABLED])
    endpoint_label: LabelName = contract.ENDPOINT
    # the series label that scraping adds from the pod label, with the plan's track names as values
    track_label: LabelName = contract.TRACK
    pod_label: PodLabel = contract.TRACK
    # the service's endpoint label value -> plan endpoint name, where they differ
    endpoints: dict[Line, Name] = Field(default_factory=dict)
    # range the traffic triggers judge unless a trigger sets its own window
    window: PositiveSeconds = 300.0

    def service_endpoint(self, plan_endpoint: str) -> str:
        """The service's endpoint label value for a plan endpoint."""
        for value, name in self.endpoints.items():
            if name == plan_endpoint:
                return value
        return plan_endpoint


def problems(plan: Plan) -> list[str]:
    """What is wrong with the traffic section and the traffic triggers, with field paths."""
    out = _trigger_problems(plan)
    t = plan.traffic
    if t is None:
        return out
    if t.duration is not None and t.duration.endswith(_HISTOGRAM_SUFFIXES):
        base = re.sub(r"_(bucket|sum|count)$", "", t.duration)
        out.append(f"traffic.duration: name the histogram without its suffix: {base!r}")
    out += _label_problems(t)
    out += _endpoint_problems(plan, t)
    if t.ignored_error_types and t.errors is None:
        out.append("traffic.ignored_error_types: needs traffic.errors (the counter that says "
                   "the error type)")
    scrape = plan.prometheus.scrape_interval
    if t.window < 2 * scrape:
        out.append(f"traffic.window: {format_duration(t.window)} holds fewer than two scrapes at "
                   f"prometheus.scrape_interval ({format_duration(scrape)}): rate() needs two "
                   f"samples; use at least {format_duration(2 * scrape)}")
    return out


def _trigger_problems(plan: Plan) -> list[str]:
    """Triggers' fields that do not fit their source (probe or traffic)."""
    out: list[str] = []
    t = plan.traffic
    for i, trig in enumerate(plan.triggers):
        if trig.source != "traffic":
            if trig.min_requests is not None:
                out.append(f"triggers[{i}].min_requests: only for source: traffic "
                           "(probe triggers count min_probes)")
            continue
        if t is None:
            continue  # Plan._references says the section is missing
        if trig.kind not in TRAFFIC_KINDS:
            out.append(f"triggers[{i}].source: a {trig.kind} trigger judges probes only; traffic "
                       f"triggers are {', '.join(TRAFFIC_KINDS)}")
        if trig.min_probes is not None:
            out.append(f"triggers[{i}].min_probes: a traffic trigger counts requests: "
                       "use min_requests")
        if trig.kind == "latency_avg" and t.duration is None:
            out.append(f"triggers[{i}].source: a traffic latency trigger needs traffic.duration "
                       "(the service's latency histogram)")
    return out


def _label_problems(t: Traffic) -> list[str]:
    """Label names that are Prometheus's own or that two fields share."""
    out: list[str] = []
    labels = {"status_label": t.status_label, "endpoint_label": t.endpoint_label,
              "track_label": t.track_label}
    if t.errors is not None:
        labels["error_type_label"] = t.error_type_label
    seen: dict[str, str] = {}
    for field, name in labels.items():
        if name.startswith("__"):
            out.append(f"traffic.{field}: {name!r}: names starting with __ are Prometheus's own")
        elif name in ("le", "job", "instance") and field != "endpoint_label":
            out.append(f"traffic.{field}: {name!r} is a label Prometheus or histograms set; "
                       "pick the service's own label")
        if name in seen and field != "error_type_label":
            out.append(f"traffic.{field}: {name!r} is also traffic.{seen[name]}")
        seen.setdefault(name, field)
    return out


def _endpoint_problems(plan: Plan, t: Traffic) -> list[str]:
    """traffic.endpoints entries that name no plan endpoint, or one twice."""
    out: list[str] = []
    known = {e.name for e in plan.endpoints}
    mapped: dict[str, str] = {}
    for value, name in t.endpoints.items():
        if name not in known:
            out.append(f"traffic.endpoints.{value}: no endpoint named {name!r}")
        elif name in mapped:
            out.append(f"traffic.endpoints.{value}: {name!r} is already the endpoint of "
                       f"{mapped[name]!r}")
        elif value in known and value != name:
            out.append(f"traffic.endpoints.{value}: {value!r} is another plan endpoint's name; "
                       "its series would be counted twice")
        mapped.setdefault(name, value)
    return out


def default_window(plan: Plan) -> float:
    """What traffic triggers judge unless they set their own window: ``traffic.window``, never
    shorter than four scrapes (rate() needs samples to work with)."""
    assert plan.traffic is not None
    return float(max(plan.traffic.window, math.ceil(4 * plan.prometheus.scrape_interval)))


# an average latency of fewer requests is noise (one slow request among three is not a release);
# also above what probes alone put in a window (20 per endpoint in 5m at 15s, 10 in the demo's 10s)
LATENCY_MIN_REQUESTS = 30


def min_requests(plan: Plan, trigger: Trigger) -> int:
    """Requests a traffic trigger needs in its window before it may fire. Ratios: derived like
    ``Plan.min_probes`` (ceil(1/margin)), so that one failed request among few never breaches
    (2%: 50; one failure in 20 requests is 5% but never fires); latency: LATENCY_MIN_REQUESTS."""
    if trigger.min_requests is not None:
        return trigger.min_requests
    if trigger.kind == "latency_avg":
        return LATENCY_MIN_REQUESTS
    return plan.min_probes(trigger.model_copy(update={"min_probes": None}))
