"""What the gate reads from Prometheus: probe counts and latency histograms over a window.

Everything comes from the exporter's raw series (``canary_probes_total``,
``canary_probe_duration_seconds``), so the gate works without the recording rules loaded.
Four instant queries per window, all evaluated at the same time ``at``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from canary_guard.contract import OUTCOMES
from canary_guard.durations import format_duration, parse_duration


class PrometheusError(Exception):
    """Prometheus could not be reached or refused a query."""


def parse_time(text: str) -> float:
    """RFC3339 (``2024-05-01T12:00:00Z``), a unix timestamp, or ``now-2h`` -> unix seconds."""
    text = text.strip()
    if text.startswith("now"):
        rest = text[3:]
        if not rest:
            return datetime.now().timestamp()
        if rest[0] in "+-":
            sign = -1 if rest[0] == "-" else 1
            return datetime.now().timestamp() + sign * parse_duration(rest[1:])
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not RFC3339 (2024-05-01T12:00:00Z), unix seconds or now-DURATION"
        ) from None
    if stamp.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +02:00")
    return stamp.timestamp()


class Prometheus:
    """A thin client of the Prometheus HTTP API (instant queries)."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        try:
            resp = self.client.post(f"{self.url}/api/v1/query", data={"query": expr, "time": f"{at:.3f}"})
        except httpx.HTTPError as err:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {err}") from None
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusError(
                f"{self.url}/api/v1/query answered HTTP {resp.status_code}, not JSON: is this Prometheus?"
            ) from None
        if body.get("status") != "success":
            raise PrometheusError(f"query {expr!r} failed: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"query {expr!r} returned a {data['resultType']}, expected a vector")
        out = []
        for item in data["result"]:
            value = float(item["value"][1])
            if not math.isnan(value):
                out.append((item["metric"], value))
        return out


@dataclass
class Series:
    """One track/endpoint over a window: probe outcomes and the latency histogram."""

    outcomes: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0.0))
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    latency_sum: float = 0.0
    latency_count: float = 0.0

    @property
    def counted(self) -> int:
        """Probes that count (not disabled), rounded: increase() extrapolates."""
        return round(sum(v for k, v in self.outcomes.items() if k != "disabled"))

    @property
    def successes(self) -> int:
        return round(self.outcomes["success"])

    @property
    def failures(self) -> int:
        """Counted probes that did not succeed: errors and null responses."""
        return max(0, self.counted - self.successes)

    @property
    def errors(self) -> int:
        return round(self.outcomes["error"])

    def sorted_buckets(self) -> list[tuple[float, float]]:
        return sorted(self.buckets.items())

    def add(self, other: Series) -> None:
        for k, v in other.outcomes.items():
            self.outcomes[k] = self.outcomes.get(k, 0.0) + v
        for le, v in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + v
        self.latency_sum += other.latency_sum
        self.latency_count += other.latency_count


def _sel(tracks: list[str] | None) -> str:
    if not tracks:
        return ""
    names = "|".join(sorted(set(tracks)))
    return f'{{track=~"{names}"}}'


def fetch_window(prom: Prometheus, window: float, at: float,
                 tracks: list[str] | None = None) -> dict[tuple[str, str], Series]:
    """Increase of every probe series over ``window`` ending at ``at``, per (track, endpoint)."""
    w, sel = format_duration(window), _sel(tracks)
    data: dict[tuple[str, str], Series] = {}

    def series(labels: dict[str, str]) -> Series:
        key = (labels.get("track", ""), labels.get("endpoint", ""))
        return data.setdefault(key, Series())

    q = f"sum by (track, endpoint, outcome) (increase(canary_probes_total{sel}[{w}]))"
    for labels, v in prom.query(q, at):
        series(labels).outcomes[labels.get("outcome", "")] = v
    bucket_q = f"sum by (track, endpoint, le) (increase(canary_probe_duration_seconds_bucket{sel}[{w}]))"
    for labels, v in prom.query(bucket_q, at):
        series(labels).buckets[float(labels["le"])] = v
    q = f"sum by (track, endpoint) (increase(canary_probe_duration_seconds_sum{sel}[{w}]))"
    for labels, v in prom.query(q, at):
        series(labels).latency_sum = v
    q = f"sum by (track, endpoint) (increase(canary_probe_duration_seconds_count{sel}[{w}]))"
    for labels, v in prom.query(q, at):
        series(labels).latency_count = v
    return data


def first_sample(prom: Prometheus, track: str, lookback: float, at: float) -> float | None:
    """Time of the earliest ``canary_probes_total`` sample of a track within ``lookback``."""
    step = max(15.0, math.ceil(lookback / 1000))
    expr = (
        f'min(min_over_time(timestamp(canary_probes_total{{track="{track}"}})'
        f"[{format_duration(lookback)}:{format_duration(step)}]))"
    )
    result = prom.query(expr, at)
    return result[0][1] if result else None


def gauges(prom: Prometheus, metric: str, at: float,
           tracks: list[str] | None = None) -> dict[tuple[str, str], float]:
    return {
        (labels.get("track", ""), labels.get("endpoint", "")): v
        for labels, v in prom.query(f"max by (track, endpoint) ({metric}{_sel(tracks)})", at)
    }
