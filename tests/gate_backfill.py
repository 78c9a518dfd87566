"""Known probe data for the gate tests: simulated probes -> OpenMetrics -> promtool backfill.

Each scenario is one track (a label value) over a time range, so one Prometheus serves them
all. Probes are simulated one by one (seeded), counted into the exporter's metric families
exactly as the exporter would, and written as cumulative samples every ``scrape`` seconds.
"""

from __future__ import annotations

import math
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import Processes, free_port, need_binary

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, math.inf)


@dataclass
class Scenario:
    track: str
    endpoints: tuple[str, ...]
    start: float  # unix seconds of the first probe
    end: float
    probes_per_hour: int  # per endpoint
    median: float = 0.12  # seconds, lognormal latencies
    sigma: float = 0.3
    failures_per_hour: int = 0  # exact count per endpoint and hour, at random probes
    seed: int = 1


def _le(b: float) -> str:
    return "+Inf" if math.isinf(b) else repr(float(b))


def simulate(s: Scenario, endpoint: str, scrape: float) -> list[tuple[float, dict]]:
    """Cumulative counters of one track/endpoint at each scrape time from start to end."""
    rng = random.Random(f"{s.seed}-{s.track}-{endpoint}")
    period = 3600 / s.probes_per_hour
    n = int((s.end - s.start) / period)
    failing: set[int] = set()
    per_hour = s.probes_per_hour
    for h in range(math.ceil(n / per_hour)):
        idx = range(h * per_hour, min(n, (h + 1) * per_hour))
        failing |= set(rng.sample(list(idx), min(len(idx), s.failures_per_hour)))
    succ = err = 0
    counts = [0] * len(BUCKETS)
    total = 0.0
    out = []
    t_next = s.start
    i = 0
    while t_next <= s.end:
        while i < n and s.start + i * period <= t_next:
            latency = s.median * math.exp(rng.gauss(0, s.sigma))
            if i in failing:
                err += 1
            else:
                succ += 1
            for j, b in enumerate(BUCKETS):
                if latency <= b:
                    counts[j] += 1
            total += latency
            i += 1
        out.append((t_next, {"success": succ, "error": err, "buckets": list(counts), "sum": total,
                             "count": succ + err}))
        t_next += scrape
    return out


def write_openmetrics(scenarios: list[Scenario], path: Path, scrape: float = 30.0,
                      traffic: list[Scenario] | None = None, job: str = "svc",
                      error_type: str = "internal") -> None:
    """The probe scenarios as the exporter's series; ``traffic``: more scenarios as the
    service's own request metrics (RecoveryOS's names and labels, the track added by scraping),
    each failure counted with ``error_type``."""
    series = [(s, ep, simulate(s, ep, scrape)) for s in scenarios for ep in s.endpoints]
    with path.open("w") as f:
        if traffic:
            _write_traffic(f, [(s, ep, simulate(s, ep, scrape)) for s in traffic for ep in s.endpoints],
                           job, error_type)
        f.write("# TYPE canary_probes counter\n")
        for s, ep, points in series:
            for outcome in ("success", "error"):
                lab = f'track="{s.track}",endpoint="{ep}",outcome="{outcome}"'
                for t, p in points:
                    f.write(f"canary_probes_total{{{lab}}} {p[outcome]} {t:.3f}\n")
        f.write("# TYPE canary_probe_duration_seconds histogram\n")
        for s, ep, points in series:
            lab = f'track="{s.track}",endpoint="{ep}"'
            for t, p in points:
                for b, c in zip(BUCKETS, p["buckets"], strict=True):
                    f.write(f'canary_probe_duration_seconds_bucket{{{lab},le="{_le(b)}"}} {c} {t:.3f}\n')
                f.write(f"canary_probe_duration_seconds_count{{{lab}}} {p['count']} {t:.3f}\n")
                f.write(f"canary_probe_duration_seconds_sum{{{lab}}} {p['sum']:.6f} {t:.3f}\n")
        f.write("# EOF\n")


def _write_traffic(f, series, job: str, error_type: str) -> None:
    base = 'job="{job}",track="{track}",endpoint="{ep}",version="2.4.1",env="production"'
    f.write("# TYPE recoveryos_requests counter\n")
    for s, ep, points in series:
        lab = base.format(job=job, track=s.track, ep=ep)
        for status in ("success", "error"):
            for t, p in points:
                f.write(f'recoveryos_requests_total{{{lab},status="{status}"}} {p[status]} {t:.3f}\n')
    f.write("# TYPE recoveryos_errors counter\n")
    for s, ep, points in series:
        lab = base.format(job=job, track=s.track, ep=ep)
        for t, p in points:
            f.write(f'recoveryos_errors_total{{{lab},error_type="{error_type}"}} {p["error"]} {t:.3f}\n')
    f.write("# TYPE recoveryos_request_duration_seconds histogram\n")
    for s, ep, points in series:
        lab = base.format(job=job, track=s.track, ep=ep)
        for t, p in points:
            for b, c in zip(BUCKETS, p["buckets"], strict=True):
                f.write(f'recoveryos_request_duration_seconds_bucket{{{lab},le="{_le(b)}"}} {c} {t:.3f}\n')
            f.write(f"recoveryos_request_duration_seconds_count{{{lab}}} {p['count']} {t:.3f}\n")
            f.write(f"recoveryos_request_duration_seconds_sum{{{lab}}} {p['sum']:.6f} {t:.3f}\n")


def backfill(promtool: str, openmetrics: Path, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"promtool failed: {proc.stdout}\n{proc.stderr}")


@contextmanager
def prometheus_over(root: Path) -> Iterator[str]:
    """A Prometheus over the TSDB backfilled into ``root/tsdb``: its URL, once it answers queries."""
    prometheus = need_binary("prometheus")
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        procs.start([prometheus, f"--config.file={root / 'prometheus.yml'}",
                     f"--storage.tsdb.path={root / 'tsdb'}", "--storage.tsdb.retention.time=30d",
                     f"--web.listen-address=127.0.0.1:{port}"],
                    "prometheus", ready_url=f"{url}/-/ready", timeout=60)
        _wait_ready(url)
        yield url
    finally:
        procs.stop_all()


def _wait_ready(url: str) -> None:
    # /-/ready answers 503 while the TSDB loads; Processes.start only waits for an answer
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("prometheus not ready")
