"""Benchmark /metrics: canary-guard's own renderer beside prometheus_client, then the exporter.

Part 1, in this process, at 20, 1,000 and 10,000 (track, endpoint) series (41 samples each,
the same families, labels and values in both renderers; prometheus_client without _created
series, which canary-guard does not expose): time to render the text format and
OpenMetrics, bytes plain and gzipped, and the peak memory a scrape allocates (tracemalloc):
canary-guard streaming its pieces and gzipping them as /metrics does, prometheus_client
building its whole body (its generate_latest has no streaming form).

Part 2, the real exporter at 10,000 endpoints probing a local target at 500 probes/s: scrapes
as Prometheus asks (OpenMetrics + gzip) and as a plain client asks (text, no gzip), with the
exporter's RSS floor between scrapes and its peak during each scrape (VmHWM, reset before
each scrape through /proc/PID/clear_refs), bytes on the wire and scrape time.

    .venv/bin/python bench/bench_exposition.py               # ~3 minutes
    .venv/bin/python bench/bench_exposition.py --scrapes 20  # a longer part 2
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_exporter as be  # noqa: E402 -- the target server, process handling, plan writer
from canary_guard.exporter import exposition  # noqa: E402
from canary_guard.exporter.metrics import FAMILIES, Metrics  # noqa: E402

from canary_guard.contract import (  # noqa: E402
    BUCKETS,
    ERROR_REASONS,
    OUTCOMES,
    PII_KINDS,
    SKIP_REASONS,
)
from canary_guard.judge import ProbeOutcome  # noqa: E402

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
OUTCOMES_SEEN = (ProbeOutcome("success", None, 200, 0.0123), ProbeOutcome("error", "http_5xx", 503, 0.2),
                 ProbeOutcome("null", None, 200, 0.05))


def pairs(n: int) -> list[tuple[str, str]]:
    return [("canary" if i % 2 == 0 else "stable", f"e_{i // 2:05d}") for i in range(n)]


def ours(n: int) -> Metrics:
    m = Metrics("bench", "bench")
    for k, (track, ep) in enumerate(pairs(n)):
        s = m.add(track, ep)
        for o in OUTCOMES_SEEN[: 1 + k % 3]:
            s.record(o, now=1.7e9)
    return m


def theirs(n: int):
    """The same families, labels and values in a prometheus_client registry."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

    disable_created_metrics()
    reg = CollectorRegistry()
    kinds = {name: kind for name, kind, _ in FAMILIES}
    helps = {name: h for name, _, h in FAMILIES}
    names = [name for name, _, _ in FAMILIES]
    tl = ["track", "endpoint"]

    def counter(name: str, extra: str) -> Counter:
        return Counter(name.removesuffix("_total"), helps[name], [*tl, extra], registry=reg)

    hist = Histogram(names[0], helps[names[0]], tl, buckets=BUCKETS, registry=reg)
    probes, errors = counter(names[1], "outcome"), counter(names[2], "reason")
    streak = Gauge(names[3], helps[names[3]], tl, registry=reg)
    pii = counter(names[4], "kind")
    success, last, status = (Gauge(x, helps[x], tl, registry=reg) for x in names[5:8])
    skipped = counter(names[8], "reason")
    assert [kinds[x] for x in names] == ["histogram", "counter", "counter", "gauge", "counter", "gauge",
                                          "gauge", "gauge", "counter"]
    for k, (track, ep) in enumerate(pairs(n)):
        h = hist.labels(track, ep)
        for o in OUTCOMES:
            probes.labels(track, ep, o)
        for r in ERROR_REASONS:
            errors.labels(track, ep, r)
        for p in PII_KINDS:
            pii.labels(track, ep, p)
        for r in SKIP_REASONS:
            skipped.labels(track, ep, r)
        for g in (streak, success, last, status):
            g.labels(track, ep).set(0)
        for o in OUTCOMES_SEEN[: 1 + k % 3]:
            h.observe(o.duration)
            probes.labels(track, ep, o.outcome).inc()
            if o.reason:
                errors.labels(track, ep, o.reason).inc()
            status.labels(track, ep).set(o.status)
            last.labels(track, ep).set(1.7e9)
        streak.labels(track, ep).set(1 if k % 3 == 2 else 0)
        success.labels(track, ep).set(1 if k % 3 == 0 else 0)
    return reg


def gzip_bytes(body: bytes, level: int = exposition.GZIP_LEVEL) -> bytes:
    z = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return z.compress(body) + z.flush()


def timed(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1000


def peak(fn) -> float:
    """MiB allocated at the peak of fn(), beyond what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def stream(m: Metrics, fmt: str, gz: bool) -> int:
    """What /metrics does, minus the socket: pieces, each compressed as it goes."""
    z = zlib.compressobj(exposition.GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if gz else None
    sent = 0
    for chunk in exposition.chunks(m, fmt):
        sent += len(z.compress(chunk) if z else chunk)
    return sent + (len(z.flush()) if z else 0)


def rows_for(n: int) -> list[tuple]:
    """(renderer, text ms, OM ms, OM+gzip ms, text bytes, OM bytes, OM gzip bytes, peak MiB)."""
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    m, reg = ours(n), theirs(n)
    repeat = 9 if n <= 1000 else 3
    om_ours, om_theirs = m.render(exposition.OPENMETRICS), generate_openmetrics(reg)
    return [
        ("canary-guard", timed(lambda: m.render(exposition.TEXT), repeat),
         timed(lambda: m.render(exposition.OPENMETRICS), repeat),
         timed(lambda: stream(m, exposition.OPENMETRICS, True), repeat),
         len(m.render(exposition.TEXT)), len(om_ours), len(gzip_bytes(om_ours)),
         peak(lambda: stream(m, exposition.OPENMETRICS, True))),
        ("prometheus_client", timed(lambda: generate_latest(reg), repeat),
         timed(lambda: generate_openmetrics(reg), repeat),
         timed(lambda: gzip_bytes(generate_openmetrics(reg)), repeat),
         len(generate_latest(reg)), len(om_theirs), len(gzip_bytes(om_theirs)),
         peak(lambda: gzip_bytes(generate_openmetrics(reg)))),
    ]


def part1(sizes: list[int]) -> None:
    print("Part 1: /metrics in process, the same series in both renderers")
    print(f"{'series':>7} {'renderer':<18} | {'text ms':>8} {'OM ms':>8} {'OM+gzip ms':>10} | "
          f"{'text bytes':>11} {'OM bytes':>11} {'OM gzip':>9} | {'peak MiB (OM+gzip scrape)':>25}")
    for n in sizes:
        rows = rows_for(n)
        for name, t_text, t_om, t_gz, b_text, b_om, b_gz, mem in rows:
            print(f"{n:7d} {name:<18} | {t_text:8.1f} {t_om:8.1f} {t_gz:10.1f} | {b_text:11,d} {b_om:11,d} "
                  f"{b_gz:9,d} | {mem:25.2f}")
        (_, a_text, a_om, a_gz, *_, a_mem), (_, b_text, b_om, b_gz, *_, b_mem) = rows
        print(f"{'':7} {'ratio client/ours':<18} | {b_text / a_text:7.1f}x {b_om / a_om:7.1f}x "
              f"{b_gz / a_gz:9.1f}x | {'':11} {'':11} {'':9} | {b_mem / a_mem:24.1f}x")


def scrape(url: str, headers: dict[str, str]) -> tuple[int, float, str]:
    req = urllib.request.Request(f"{url}/metrics", headers=headers)
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
        ctype = resp.headers.get("Content-Type", "")
    return len(body), (time.perf_counter() - t) * 1000, ctype


def vm(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def part2(n: int, rate: float, scrapes: int, every: float) -> None:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-expo-"))
    procs = be.Procs(tmp)
    try:
        tport = be.free_port()
        target = f"http://127.0.0.1:{tport}"
        procs.start([be.PYTHON, "-c", be.TARGET, str(tport)], "target")
        be.wait_http(f"{target}/")
        plan = tmp / "plan.yaml"
        be.write_plan(plan, target, n, n / rate)
        port = be.free_port()
        url = f"http://127.0.0.1:{port}"
        proc = procs.start([be.PYTHON, "-m", "canary_guard", "exporter", "--plan", str(plan),
                            "--listen", f"127.0.0.1:{port}"], "exporter")
        be.wait_http(f"{url}/healthz", timeout=60)
        time.sleep(5)
        modes = {"OpenMetrics + gzip (as Prometheus asks)": {"Accept": PROMETHEUS_ACCEPT,
                                                           "Accept-Encoding": "gzip"},
                 "text, no gzip (a plain client)": {}}
        print(f"\nPart 2: the exporter at {n:,} endpoints, {rate:g} probes/s, a scrape every {every:g} s "
              f"({scrapes} per mode, alternating); logs in {tmp}")
        results: dict[str, list[tuple[int, float, float, float]]] = {k: [] for k in modes}
        for i in range(2 * scrapes):
            name = list(modes)[i % 2]
            floor = min(vm(proc.pid, "VmRSS") for _ in range(5) if time.sleep(0.2) is None)
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            size, ms, ctype = scrape(url, modes[name])
            results[name].append((size, ms, floor, vm(proc.pid, "VmHWM")))
            time.sleep(max(0.0, every - ms / 1000 - 1.0))
        done = be.healthz(url)["probes_completed"]
        for name, rows in results.items():
            sizes = [r[0] for r in rows]
            times = [r[1] for r in rows]
            over = [r[3] - r[2] for r in rows]
            print(f"  {name}: {statistics.median(sizes) / 1e6:.2f} MB on the wire; "
                  f"{statistics.median(times):.0f} ms median, {max(times):.0f} ms max; "
                  f"RSS floor {statistics.median(r[2] for r in rows):.1f} MiB, peak minus floor "
                  f"{statistics.median(over):.1f} MiB median, {max(over):.1f} MiB max")
            print(f"    scrape times (ms): {', '.join(f'{t:.0f}' for t in times)}")
        om, text = (statistics.median(r[0] for r in rows) for rows in results.values())
        floors = [r[2] for rows in results.values() for r in rows]
        print(f"  bytes: OpenMetrics + gzip is {text / om:.1f}x smaller than the text format "
              f"({text / 1e6:.1f} MB); RSS floor first {floors[0]:.1f} MiB, last {floors[-1]:.1f} MiB; "
              f"{done:,} probes completed")
    finally:
        procs.stop_all()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20,1000,10000")
    ap.add_argument("--endpoints", type=int, default=10_000, help="part 2: endpoints probed")
    ap.add_argument("--rate", type=float, default=500.0, help="part 2: probes per second")
    ap.add_argument("--scrapes", type=int, default=6, help="part 2: scrapes per mode")
    ap.add_argument("--every", type=float, default=5.0, help="part 2: seconds between scrapes")
    ap.add_argument("--skip-exporter", action="store_true", help="part 1 only")
    args = ap.parse_args()
    part1([int(s) for s in args.sizes.split(",")])
    if not args.skip_exporter:
        part2(args.endpoints, args.rate, args.scrapes, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
