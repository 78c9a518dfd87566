"""The gate's second source of evidence: the service's own requests (the plan's traffic section).

Read from the service's raw series (its request counter, error counter and latency histogram)
into the same per-(track, endpoint) ``Series`` the probes fill, so that every criterion and the
canary-versus-baseline comparison judge requests exactly as they judge probes. Users are far
more numerous than probes: a criterion that needs 2,995 clean probes to be shown at 95% is shown
within minutes of real traffic.

Labels are mapped in Python (the service's track and endpoint labels, its endpoint names to the
plan's), and only the plan's endpoints count. Failures the plan ignores (a feature switched off)
are the ``disabled`` outcome: out of every ratio, as for probes.
"""

from __future__ import annotations

from canary_guard.durations import format_duration
from canary_guard.plan import Plan

from .prom import Prometheus, Series


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _regex(values: list[str]) -> str:
    meta = set("\\.+*?()|[]{}^$")
    return "|".join("".join("\\" + c if c in meta else c for c in v) for v in values)


def selector(plan: Plan, tracks: list[str] | None = None) -> str:
    t = plan.traffic
    assert t is not None
    eps = [t.service_endpoint(e.name) for e in plan.endpoints]
    parts = [f"{t.endpoint_label}=~{_string(_regex(eps))}"]
    if t.job:
        parts.insert(0, f"job={_string(t.job)}")
    if tracks:
        parts.append(f"{t.track_label}=~{_string(_regex(sorted(set(tracks))))}")
    return "{" + ", ".join(parts) + "}"


def fetch_traffic_window(prom: Prometheus, plan: Plan, window: float, at: float,
                         tracks: list[str] | None = None) -> dict[tuple[str, str], Series]:
    """Increase of the service's request series over ``window`` ending at ``at``, per (track,
    endpoint) with the plan's names; empty without a traffic section or without data."""
    t = plan.traffic
    if t is None:
        return {}
    w, sel = format_duration(window), selector(plan, tracks)
    names = {t.service_endpoint(e.name): e.name for e in plan.endpoints}
    by = f"{t.track_label}, {t.endpoint_label}"
    data: dict[tuple[str, str], Series] = {}

    def series(labels: dict[str, str]) -> Series | None:
        ep = names.get(labels.get(t.endpoint_label, ""))
        if ep is None:
            return None
        return data.setdefault((labels.get(t.track_label, ""), ep), Series())

    q = f"sum by ({by}, {t.status_label}) (increase({t.requests}{sel}[{w}]))"
    for labels, v in prom.query(q, at):
        s = series(labels)
        if s is not None:
            key = "error" if labels.get(t.status_label, "") in t.failure else "success"
            s.outcomes[key] += v
    if t.errors is not None and t.ignored_error_types:
        # ignored failures (a feature switched off): the probes' "disabled" outcome
        err_sel = sel[:-1] + f", {t.error_type_label}=~{_string(_regex(t.ignored_error_types))}}}"
        q = f"sum by ({by}) (increase({t.errors}{err_sel}[{w}]))"
        for labels, v in prom.query(q, at):
            s = series(labels)
            if s is not None:
                moved = min(v, s.outcomes["error"])
                s.outcomes["error"] -= moved
                s.outcomes["disabled"] += moved
    if t.duration is not None:
        q = f"sum by ({by}, le) (increase({t.duration}_bucket{sel}[{w}]))"
        for labels, v in prom.query(q, at):
            s = series(labels)
            if s is not None:
                s.buckets[float(labels["le"])] = v
        for suffix, attr in (("_sum", "latency_sum"), ("_count", "latency_count")):
            q = f"sum by ({by}) (increase({t.duration}{suffix}{sel}[{w}]))"
            for labels, v in prom.query(q, at):
                s = series(labels)
                if s is not None:
                    setattr(s, attr, v)
    return data
