"""Names of the recording rules, in Prometheus's ``level:metric:operations`` form.

Alerts, phase gates, dashboards and the generated tests refer to recording rules by these
functions only, so a rule and its readers cannot drift apart.
"""

from __future__ import annotations

from canary_guard import contract
from canary_guard.durations import format_duration

# aggregation levels: the name's prefix and the labels it keeps
TRACK_ENDPOINT, TRACK = "track_endpoint", "track"
LEVELS = ((TRACK_ENDPOINT, f"{contract.TRACK}, {contract.ENDPOINT}"), (TRACK, contract.TRACK))

_PROBES = contract.PROBES.removesuffix("_total")  # canary_probes

GATE_OK = "track:canary_phase_gate:ok"
GATE_ALL_OK = "track:canary_phase_gate:all_ok"


def w(seconds: float) -> str:
    """A window as it appears in names and ranges: ``18m45s``."""
    return format_duration(seconds)


def probes(level: str, window: float, outcome: str | None = None) -> str:
    """``track_endpoint:canary_probes_error:rate5m``; outcome None = every counted probe."""
    metric = _PROBES + (f"_{outcome}" if outcome else "")
    return f"{level}:{metric}:rate{w(window)}"


def ratio(level: str, what: str, window: float) -> str:
    """``track:canary_probe_availability:ratio_rate7m30s`` (what: error_ratio, availability)."""
    return f"{level}:canary_probe_{what}:ratio_rate{w(window)}"


def latency(level: str, stat: str, window: float) -> str:
    """``track_endpoint:canary_probe_duration_seconds:avg_rate1m`` (stat: avg, p95, p99)."""
    return f"{level}:{contract.PROBE_DURATION}:{stat}_rate{w(window)}"


# -- the service's own traffic (rules/traffic.py): the same levels, plan names in the labels ------

_TRAFFIC = contract.TRAFFIC_PREFIX  # canary_traffic


def traffic(level: str, window: float, outcome: str | None = None) -> str:
    """``track_endpoint:canary_traffic_requests:rate5m`` (requests the ratios count, per second);
    outcome ``error``: the failed ones."""
    return f"{level}:{_TRAFFIC}_requests{'_' + outcome if outcome else ''}:rate{w(window)}"


def traffic_ratio(level: str, what: str, window: float) -> str:
    """``track_endpoint:canary_traffic_error_ratio:ratio_rate5m`` (what: error_ratio, availability)."""
    return f"{level}:{_TRAFFIC}_{what}:ratio_rate{w(window)}"


def traffic_latency(level: str, stat: str, window: float) -> str:
    """``track_endpoint:canary_traffic_duration_seconds:p99_rate5m`` (stat: avg, p95, p99)."""
    return f"{level}:{_TRAFFIC}_duration_seconds:{stat}_rate{w(window)}"
