"""Benchmark the exporter against Debian's blackbox_exporter, on loopback.

Prints, for 10, 1,000 and 10,000 endpoint entries against one fast local target:
probes/s and CPU milliseconds per probe of canary-guard's exporter and of blackbox_exporter
driven the way Prometheus drives it (``GET /probe?target=...&module=...``, one request per
target per scrape interval, spread over the interval), and their ratio. Then the time to
render /metrics at 10,000 endpoints and the exporter's RSS over a bounded run.

CPU is read from /proc/<pid>/stat (utime + stime) of the exporter processes only: the
target and the driver are excluded. Both exporters see the same target and the same probe
rate. Everything binds to 127.0.0.1 and every process started here is stopped by PID.

    .venv/bin/python bench/bench_exporter.py                 # ~3 minutes
    .venv/bin/python bench/bench_exporter.py --minutes 10    # the 10-minute memory check
    .venv/bin/python bench/bench_exporter.py --clients       # also aiohttp vs httpx
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TICK = os.sysconf("SC_CLK_TCK")

# A minimal keep-alive HTTP/1.1 server answering every request with the same 227-byte JSON.
TARGET = r'''
import asyncio, sys
BODY = (b'{"result":{"status":"ok","items_processed":42,"score":0.8731,"note":"contact '
        b'[EMAIL_REDACTED] for details"},"request_id":"7d9f3c1e-2a4b-4c8d-9e0f-1a2b3c4d5e6f",'
        b'"timestamp":"2026-01-15T10:30:00.123456Z","ok":true,"n":12}')
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)

class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head, n = self.buf[:i].lower(), 0
            j = head.find(b"content-length:")
            if j >= 0:
                n = int(head[j + 15:].split(b"\r\n", 1)[0])
            if len(self.buf) < i + 4 + n:
                return
            self.buf = self.buf[i + 4 + n:]
            self.t.write(RESP)

async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await srv.serve_forever()

asyncio.run(main())
'''

CLIENTS = r'''
import asyncio, resource, sys, time
url, n, conc, which = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

async def run_aiohttp():
    import aiohttp
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        async def one():
            async with s.get(url) as r:
                await r.read()
        await one()
        c0 = cpu()
        sem = asyncio.Semaphore(conc)
        async def lim():
            async with sem:
                await one()
        await asyncio.gather(*(lim() for _ in range(n)))
        return cpu() - c0

async def run_httpx():
    import httpx
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits) as c:
        await c.get(url)
        c0 = cpu()
        sem = asyncio.Semaphore(conc)
        async def lim():
            async with sem:
                r = await c.get(url)
                r.read()
        await asyncio.gather(*(lim() for _ in range(n)))
        return cpu() - c0

spent = asyncio.run(run_aiohttp() if which == "aiohttp" else run_httpx())
print(spent / n * 1000)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


class Procs:
    def __init__(self, logdir: Path):
        self.logdir, self.procs = logdir, []

    def start(self, argv: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        with open(self.logdir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def write_plan(path: Path, target: str, n: int, interval: float) -> None:
    plan = {
        "version": 1, "name": "bench", "service": "bench",
        "targets": [{"name": "canary", "url": target, "guarded": True}],
        "probe": {"interval": interval, "timeout": min(interval, 5.0), "max_body_bytes": 65536,
                  "concurrency": 64},
        "endpoints": [{"name": f"e_{i:05d}", "method": "GET", "path": f"/e/{i}",
                       "required_fields": ["result"]} for i in range(n)],
    }
    path.write_text(yaml.safe_dump(plan, sort_keys=False))


def healthz(url: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{url}/healthz", timeout=10).read())


def measure_ours(procs: Procs, tmp: Path, target: str, n: int, rate: float, warm: float,
                 window: float, memory_seconds: float = 0.0) -> dict:
    interval = n / rate
    plan = tmp / f"plan-{n}.yaml"
    write_plan(plan, target, n, interval)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = procs.start([PYTHON, "-m", "canary_guard", "exporter", "--plan", str(plan),
                        "--listen", f"127.0.0.1:{port}"], f"exporter-{n}")
    wait_http(f"{url}/healthz")
    time.sleep(warm)
    c0, p0, t0 = cpu_seconds(proc.pid), healthz(url)["probes_completed"], time.monotonic()
    time.sleep(window)
    c1, p1, t1 = cpu_seconds(proc.pid), healthz(url)["probes_completed"], time.monotonic()
    probes = p1 - p0
    out = {"n": n, "rate_target": rate, "probes_per_s": probes / (t1 - t0),
           "cpu_ms_per_probe": (c1 - c0) * 1000 / max(probes, 1)}
    text = urllib.request.urlopen(f"{url}/metrics", timeout=60).read().decode()
    out["errors"] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("canary_probes_total{") and 'outcome="error"' in line)
    out["skipped"] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("canary_probe_skipped_total{"))
    if memory_seconds:
        out.update(measure_memory(proc, url, memory_seconds))
    procs.stop(proc)
    return out


def measure_memory(proc: subprocess.Popen, url: str, seconds: float) -> dict:
    """RSS every 5 s while Prometheus-like scrapes (every 15 s) and probes go on."""
    scrape_ms, samples = [], []
    start = time.monotonic()
    next_scrape = start
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now >= next_scrape:
            t = time.perf_counter()
            urllib.request.urlopen(f"{url}/metrics", timeout=60).read()
            scrape_ms.append((time.perf_counter() - t) * 1000)
            next_scrape += 15
        samples.append((now - start, rss_mib(proc.pid)))
        time.sleep(5)
    samples.append((time.monotonic() - start, rss_mib(proc.pid)))
    first = [r for t, r in samples if t <= min(60.0, seconds / 2)]
    last = [r for t, r in samples if t >= seconds - min(60.0, seconds / 2)]
    return {"rss_samples": samples, "rss_first": statistics.median(first),
            "rss_last": statistics.median(last), "rss_floor_first": min(first),
            "rss_floor_last": min(last), "rss_max": max(r for _, r in samples), "scrape_ms": scrape_ms}


async def drive_blackbox(bb_url: str, targets: list[str], rate: float, seconds: float) -> tuple[int, int]:
    """Send /probe requests at ``rate``/s cycling over ``targets``, like Prometheus scrapes."""
    import aiohttp

    ok = failed = 0
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "10", "Accept": "text/plain"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as s:
        async def one(target: str) -> None:
            nonlocal ok, failed
            try:
                async with s.get(f"{bb_url}/probe", params={"target": target, "module": "http_2xx"},
                                 headers=headers) as r:
                    body = await r.read()
                if r.status == 200 and b"\nprobe_success 1" in body:
                    ok += 1
                else:
                    failed += 1
            except aiohttp.ClientError:
                failed += 1

        loop = asyncio.get_running_loop()
        start, tasks, k = loop.time(), set(), 0
        while True:
            due = start + k / rate
            if due - start >= seconds:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.create_task(one(targets[k % len(targets)]))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            k += 1
        if tasks:
            await asyncio.wait(tasks, timeout=15)
    return ok, failed


def measure_blackbox(procs: Procs, tmp: Path, target: str, n: int, rate: float, warm: float,
                     window: float) -> dict | None:
    binary = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
    if not binary:
        return None
    config = tmp / "blackbox.yml"
    config.write_text(yaml.safe_dump({"modules": {"http_2xx": {
        "prober": "http", "timeout": "5s",
        "http": {"method": "GET", "preferred_ip_protocol": "ip4", "valid_status_codes": [200]},
    }}}))
    port = free_port()
    bb = f"http://127.0.0.1:{port}"
    proc = procs.start([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                       f"blackbox-{n}")
    wait_http(f"{bb}/-/healthy")
    targets = [f"{target}/e/{i}" for i in range(n)]
    asyncio.run(drive_blackbox(bb, targets, rate, warm))
    c0, t0 = cpu_seconds(proc.pid), time.monotonic()
    ok, failed = asyncio.run(drive_blackbox(bb, targets, rate, window))
    c1, t1 = cpu_seconds(proc.pid), time.monotonic()
    procs.stop(proc)
    probes = ok + failed
    return {"n": n, "probes_per_s": probes / (t1 - t0), "cpu_ms_per_probe": (c1 - c0) * 1000 / max(probes, 1),
            "failed": failed}


def render_time(n: int = 10_000, repeat: int = 7) -> dict:
    """In-process /metrics at n series: render (wall and CPU), and what a probe pays for it."""
    sys.path.insert(0, str(ROOT))
    from canary_guard.exporter.metrics import Metrics

    from canary_guard.judge import ProbeOutcome

    m = Metrics("bench", "bench")
    for i in range(n):
        m.add("canary", f"e_{i:05d}")
    outcome = ProbeOutcome("success", None, 200, 0.0123)
    wall, cpu, record, size = [], [], [], 0
    for _ in range(repeat):
        t = time.process_time()
        for s in m.series:
            s.record(outcome)
        record.append((time.process_time() - t) / n * 1e6)
        t, c = time.perf_counter(), time.process_time()
        body = m.render()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        size = len(body)
    return {"wall_ms": statistics.median(wall), "wall_min_ms": min(wall), "cpu_ms": statistics.median(cpu),
            "record_us": statistics.median(record), "bytes": size,
            "samples": body.count(b"\n") - body.count(b"\n#")}


def compare_clients(target: str, n: int = 3000) -> list[tuple[str, int, float]]:
    out = []
    for conc in (1, 8, 64):
        for which in ("aiohttp", "httpx"):
            res = subprocess.run([PYTHON, "-c", CLIENTS, f"{target}/c", str(n), str(conc), which],
                                 capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                print(res.stderr[-2000:], file=sys.stderr)
                continue
            out.append((which, conc, float(res.stdout.strip())))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=500.0, help="probes/s at 1,000 and 10,000 endpoints")
    ap.add_argument("--window", type=float, default=10.0, help="seconds measured per run")
    ap.add_argument("--minutes", type=float, default=1.0, help="length of the memory run (10 for the goal)")
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--clients", action="store_true", help="also compare aiohttp and httpx CPU per request")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    procs = Procs(tmp)
    try:
        tport = free_port()
        target = f"http://127.0.0.1:{tport}"
        procs.start([PYTHON, "-c", TARGET, str(tport)], "target")
        wait_http(f"{target}/")
        print(f"target: minimal asyncio HTTP server on {target} (227-byte JSON, keep-alive); "
              f"logs in {tmp}")
        print(f"{'endpoints':>9} {'rate/s':>7} | {'canary-guard':>25} | {'blackbox_exporter':>25} | ratio")
        print(f"{'':>9} {'':>7} | {'probes/s':>10} {'CPU ms/probe':>14} | {'probes/s':>10} "
              f"{'CPU ms/probe':>14} | bb/ours")
        sizes = [int(s) for s in args.sizes.split(",")]
        for n in sizes:
            rate = min(args.rate, n / 0.1)  # at most one probe per endpoint per 100 ms
            memory = args.minutes * 60 if n == max(sizes) else 0.0
            ours = measure_ours(procs, tmp, target, n, rate, warm=3.0, window=args.window,
                                memory_seconds=memory)
            bb = measure_blackbox(procs, tmp, target, n, rate, warm=2.0, window=args.window)
            ratio = bb["cpu_ms_per_probe"] / ours["cpu_ms_per_probe"] if bb else float("nan")
            bb_cols = (f"{bb['probes_per_s']:10.1f} {bb['cpu_ms_per_probe']:14.3f}" if bb
                       else f"{'(not installed)':>25}")
            print(f"{n:9d} {rate:7.0f} | {ours['probes_per_s']:10.1f} {ours['cpu_ms_per_probe']:14.3f} | "
                  f"{bb_cols} | {ratio:.2f}x"
                  + (f"  (errors: ours {ours['errors']:.0f}, blackbox {bb['failed']}; "
                     f"ours skipped {ours['skipped']:.0f})" if bb else ""))
            if memory:
                mem = ours
        r = render_time(max(sizes))
        print(f"/metrics render at {max(sizes)} endpoints ({r['samples']} samples, "
              f"{r['bytes'] / 1e6:.1f} MB): {r['wall_ms']:.1f} ms median wall (min {r['wall_min_ms']:.1f}), "
              f"{r['cpu_ms']:.1f} ms CPU; each probe pays {r['record_us']:.1f} us to keep its lines rendered")
        if mem.get("scrape_ms"):
            print(f"/metrics over HTTP during the run (render + transfer + client read): "
                  f"{', '.join(f'{x:.0f}' for x in mem['scrape_ms'])} ms")
        print(f"exporter RSS over {args.minutes:g} min at {max(sizes)} endpoints, {args.rate:g} probes/s, "
              f"scraped every 15 s: median {mem['rss_first']:.1f} MiB in the first minute, "
              f"{mem['rss_last']:.1f} MiB in the last (floor {mem['rss_floor_first']:.1f} -> "
              f"{mem['rss_floor_last']:.1f}); peak {mem['rss_max']:.1f} MiB while a scrape is sent")
        print("  samples (s: MiB): " + ", ".join(f"{t:.0f}: {r:.1f}" for t, r in mem["rss_samples"]))
        if args.clients:
            print("probe client CPU ms per request (keep-alive GET of the 227-byte JSON, 3,000 requests):")
            for which, conc, ms in compare_clients(target):
                print(f"  {which:8s} concurrency {conc:3d}: {ms:.3f}")
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
