"""The recording rules on the service's own request metrics: per track and endpoint, and per
track, for every window the traffic triggers and the gates need.

The service's series carry its own label names and endpoint names (the plan's traffic section
says which); the rules record them under the contract's ``track`` and ``endpoint`` labels with
the plan's endpoint names, so that the alerts, the gate and the dashboard read traffic exactly
as they read probes. Only the plan's endpoints count (the service's own routes, such as
``system_status``, do not).

Failures the plan ignores (``traffic.ignored_error_types``: a feature switched off by its flag)
are taken out of both the requests and the failures, as the probes leave their ``disabled``
outcome out; a series that does not exist yet (no failure so far) counts as zero.
"""

from __future__ import annotations

from canary_guard import contract
from canary_guard.plan import Plan, Traffic
from canary_guard.plan.traffic import default_window as traffic_window

from .model import RecordingRule
from .names import LEVELS, traffic, traffic_latency, traffic_ratio, w
from .promql import num, regex_of, string

QUANTILES = (("p95", 0.95), ("p99", 0.99))


def selector(plan: Plan, negate: bool = False, **extra: str) -> str:
    """The service's series of the plan's endpoints (and job), with extra regex matchers
    (``negate``: the extra matchers exclude instead)."""
    t = plan.traffic
    assert t is not None
    eps = [t.service_endpoint(e.name) for e in plan.endpoints]
    parts = []
    if t.job:
        parts.append(f"job={string(t.job)}")
    parts.append(f"{t.endpoint_label}=~{string(regex_of(eps))}")
    op = "!~" if negate else "=~"
    parts += [f"{k}{op}{string(v)}" for k, v in extra.items()]
    return "{" + ", ".join(parts) + "}"


def _relabelled(t: Traffic, inner: str) -> str:
    """``inner`` with the service's track and endpoint labels under the contract's names and
    the plan's endpoint names (label_replace; nothing to do when they already agree)."""
    out = inner
    if t.track_label != contract.TRACK:
        out = f'label_replace({out}, "{contract.TRACK}", "$1", {string(t.track_label)}, "(.*)")'
    if t.endpoint_label != contract.ENDPOINT:
        out = f'label_replace({out}, "{contract.ENDPOINT}", "$1", {string(t.endpoint_label)}, "(.*)")'
    for value, name in t.endpoints.items():
        out = (f'label_replace({out}, "{contract.ENDPOINT}", {string(name)}, "{contract.ENDPOINT}", '
               f"{string(regex_of([value]))})")
    return out


def summed(plan: Plan, by: str, metric: str, window: float, extra: dict[str, str] | None = None,
           suffix: str = "", negate: bool = False) -> str:
    """``sum by (BY) (rate(METRIC{...}[W]))`` with the service's labels mapped to the contract's."""
    assert plan.traffic is not None
    rate = f"rate({metric}{suffix}{selector(plan, negate, **(extra or {}))}[{w(window)}])"
    return f"sum by ({by}) ({_relabelled(plan.traffic, rate)})"


def _ignored(plan: Plan, by: str, window: float, total: str) -> str | None:
    t = plan.traffic
    assert t is not None
    if not t.ignored_error_types or t.errors is None:
        return None
    ignored = summed(plan, by, t.errors, window, {t.error_type_label: regex_of(t.ignored_error_types)})
    return f"({ignored}\nor\n{total} * 0)"


def window_rules(plan: Plan, window: float) -> list[RecordingRule]:
    """The traffic family of one window, at both levels (empty without a traffic section)."""
    t = plan.traffic
    if t is None:
        return []
    out: list[RecordingRule] = []
    for level, by in LEVELS:
        total = summed(plan, by, t.requests, window)
        failed = summed(plan, by, t.requests, window, {t.status_label: regex_of(t.failure)})
        ignored = _ignored(plan, by, window, total)
        failed = f"({failed}\nor\n{total} * 0)"
        succeeded = summed(plan, by, t.requests, window, {t.status_label: regex_of(t.failure)}, negate=True)
        requests, errors = traffic(level, window), traffic(level, window, contract.ERROR)
        successes = traffic(level, window, contract.SUCCESS)
        out.append(RecordingRule(requests, total if ignored is None else f"{total}\n-\n{ignored}"))
        out.append(RecordingRule(errors, failed if ignored is None else f"{failed}\n-\n{ignored}"))
        out.append(RecordingRule(successes, f"({succeeded}\nor\n{total} * 0)"))
        # aggregated first, then divided (never an average of ratios); each ratio from its own
        # count, so that a ratio at its threshold is exactly the threshold
        out.append(RecordingRule(traffic_ratio(level, "error_ratio", window), f"{errors}\n/\n{requests}"))
        out.append(RecordingRule(traffic_ratio(level, "availability", window), f"{successes}\n/\n{requests}"))
        if t.duration is None:
            continue
        out.append(RecordingRule(
            traffic_latency(level, "avg", window),
            f"{summed(plan, by, t.duration, window, suffix='_sum')}\n/\n"
            f"{summed(plan, by, t.duration, window, suffix='_count')}",
        ))
        buckets = summed(plan, f"{by}, {contract.LE}", t.duration, window, suffix="_bucket")
        for stat, q in QUANTILES:
            out.append(RecordingRule(traffic_latency(level, stat, window),
                                     f"histogram_quantile({num(q)}, {buckets})"))
    return out


def default_rules(plan: Plan) -> list[RecordingRule]:
    """The traffic family at the section's window (``plan.traffic.default_window``): recorded
    whenever the plan has a traffic section, so the dashboard shows traffic beside the probes."""
    return [] if plan.traffic is None else window_rules(plan, traffic_window(plan))
