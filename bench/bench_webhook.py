"""Benchmarks of the webhook: acknowledgement latency and throughput on both stores, storage and
priorities under a flood, and the front door under slow connections.

Each run starts ``canary-guard webhook`` (the real service) on loopback and drives it from a
second process: a small asyncio HTTP/1.1 client with keep-alive connections, like
Alertmanager's. Every load is bounded in count and in time; every process is stopped after.

    .venv/bin/python bench/bench_webhook.py [--backend sqlite|postgres|both] [--reference]
        acknowledgement latency at a paced 1,000/s and saturation throughput; each of
        --incidents incidents is delivered --deliveries times, interleaved (retries, repeat
        intervals and an HA pair deliver the same alert again), each incident's action is a
        recorded page. Afterwards the database is read directly: every acknowledged
        notification must be a row and every incident must have exactly one action run.
        --reference first measures a bare waitress + Flask app: this machine's floor, now.
    .venv/bin/python bench/bench_webhook.py --flood [--backend ...]
        60 s at 500 notifications/s (one in four a new incident paging through a slow HTTP
        sink), with a rollback notification sent at t=55 s: the largest size the database
        reaches (files, WAL included), acknowledged notifications lost, and how long after its
        acknowledgement the rollback's kubectl started.
    .venv/bin/python bench/bench_webhook.py --slow [--slow-connections 1100]
        that many connections each sending a header byte every 8 s, while real notifications
        arrive: how long each real one waits for its acknowledgement.

Last round's figures (SQLite, before this round's changes): p50 1.2-1.4 ms, p99 6-20 ms at a
paced 1,000/s; saturation 1,600-2,050/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKEN = "bench-token"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # postgres_helpers: a throw-away PostgreSQL cluster

LAST_ROUND = "last round (SQLite): p50 1.2-1.4 ms, p99 6-20 ms at a paced 1,000/s; saturation 1,600-2,050/s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notification(i: int, action: str = "page", alertname: str = "CanaryLatencyHigh",
                 starts_at: str = "2024-05-01T12:00:00.123456789Z") -> bytes:
    """One realistic notification (about 1 KB) for incident i (its own endpoint label, so no two
    incidents are firings of one alert)."""
    endpoint = f"ep{i}"
    labels = {"alertname": alertname, "action": action, "severity": "warning",
              "track": "canary", "endpoint": endpoint, "trigger": "latency_high"}
    body = {
        "receiver": "canary-guard", "status": "firing", "version": "4",
        "groupKey": f'{{}}/{{severity=~"critical|warning"}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0, "externalURL": "http://alertmanager:9093",
        "groupLabels": {"alertname": alertname}, "commonLabels": labels,
        "commonAnnotations": {"summary": f"average latency above 1s on {endpoint}"},
        "alerts": [{
            "status": "firing", "labels": labels,
            "annotations": {"summary": f"average latency above 1s on {endpoint}",
                            "description": "canary average latency over 5m is 1.3s (threshold 1s)",
                            "runbook_url": "https://github.com/canary-guard/canary-guard/blob/main/docs/runbook.md"},
            "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=track_endpoint%3Acanary",
            "fingerprint": f"{i:016x}",
        }],
    }
    return json.dumps(body).encode()


def request_bytes(port: int, body: bytes) -> bytes:
    head = (f"POST /alerts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Alertmanager/0.27.0\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


# -- the load generator (a second process) ----------------------------------------------------


async def _client(port: int, requests: list[bytes], connections: int, time_limit: float,
                  rate: float | None = None):
    """Send every request over ``connections`` keep-alive connections.

    Without ``rate``: closed loop, each connection sends its next request as soon as the last
    is answered (saturation). With ``rate``: open loop, request k is due at k/rate seconds and
    its latency is counted from that due time, so time spent waiting for a free connection is
    charged to the server (no coordinated omission).
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + time_limit
    loop = asyncio.get_running_loop()
    next_index = 0
    start = loop.time()

    async def conn() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline and next_index < len(requests):
                k = next_index
                next_index += 1
                if rate:
                    due = start + k / rate
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    t0 = time.perf_counter() - max(0.0, loop.time() - due)
                else:
                    t0 = time.perf_counter()
                writer.write(requests[k])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(conn() for _ in range(connections)))
    return time.perf_counter() - t0, latencies, statuses


def client_process(port: int, requests: list[bytes], connections: int, time_limit: float,
                   rate: float | None, out) -> None:
    out.send(asyncio.run(_client(port, requests, connections, time_limit, rate)))


def load(port: int, requests: list[bytes], connections: int, time_limit: float,
         rate: float | None = None):
    """Run the client in its own process; returns (seconds, latencies, statuses)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=client_process, args=(port, requests, connections, time_limit, rate, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


# -- figures --------------------------------------------------------------------------------------


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 30) -> bool:
    """Wait until ``url`` answers (any HTTP status); False when ``proc`` died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(name: str, took: float, lat: list[float], statuses: dict[int, int]) -> tuple[float, float]:
    ms = [x * 1000 for x in lat]
    rate = len(lat) / took
    print(f"  {name:<13} {rate:,.0f} notifications/s ({len(lat)} in {took:.2f}s); ack latency "
          f"p50 {pct(ms, 50):.2f} ms  p90 {pct(ms, 90):.2f} ms  p99 {pct(ms, 99):.2f} ms  "
          f"max {max(ms):.2f} ms; HTTP {dict(sorted(statuses.items()))}")
    return rate, pct(ms, 99)


# -- the service under test -------------------------------------------------------------------------

KUBECTL = """#!{python}
import sys, time
with open({record!r}, "a") as f:
    f.write(repr(time.time()) + " " + " ".join(sys.argv[1:]) + "\\n")
print("deployment.apps/recoveryos rolled back")
"""


class Backend:
    """Where the webhook keeps its record: a SQLite file or a fresh PostgreSQL database."""

    def __init__(self, kind: str, tmp: Path):
        self.kind, self.tmp, self.cluster = kind, tmp, None
        if kind == "postgres":
            from postgres_helpers import PostgresCluster

            # PostgreSQL's defaults (fsync on, synchronous commit): what production runs.
            self.cluster = PostgresCluster(durable=True).start()
            self.db = self.cluster.create_database("bench")
        else:
            self.db = str(tmp / "webhook.db")

    def query(self, sql: str) -> list[tuple]:
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(self.db) as conn:
                return conn.execute(sql).fetchall()
        import sqlite3

        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def size(self) -> int:
        """Bytes the store takes on disk now: the SQLite file with its WAL and shared memory
        file; the PostgreSQL database (its write-ahead log is the server's, see wal_size)."""
        if self.kind == "postgres":
            return self.query("SELECT pg_database_size(current_database())")[0][0]
        return sum(os.path.getsize(p) for p in (self.db, self.db + "-wal", self.db + "-shm")
                   if os.path.exists(p))

    def wal_size(self) -> int:
        """PostgreSQL: the cluster's pg_wal folder (bounded by the server's max_wal_size)."""
        if self.kind != "postgres":
            return 0
        return sum(f.stat().st_size for f in (self.cluster.data / "pg_wal").glob("*") if f.is_file())

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Webhook:
    def __init__(self, backend: Backend, threads: int, plan: Path | None = None,
                 env: dict[str, str] | None = None, extra: tuple[str, ...] = ()):
        self.port = free_port()
        self.log_path = backend.tmp / f"webhook-{self.port}.log"
        argv = [sys.executable, "-m", "canary_guard", "--log-level", "warning", "webhook", "--listen",
                f"127.0.0.1:{self.port}", "--db", backend.db, "--threads", str(threads), *extra]
        if plan is not None:
            argv[6:6] = ["--plan", str(plan)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env={**os.environ, "CANARY_GUARD_WEBHOOK_TOKEN": TOKEN,
                                                    **(env or {})},
                                         stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        if not wait_up(f"http://127.0.0.1:{self.port}/healthz", self.proc):
            self.stop()
            raise SystemExit(f"the webhook did not start:\n{self.log_path.read_text()[-3000:]}")

    def health(self) -> dict:
        return json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def check_records(backend: Backend, sent: int, acked: int, incidents_sent: int) -> bool:
    notifications = backend.query("SELECT COUNT(*) FROM notifications")[0][0]
    incidents = backend.query("SELECT COUNT(*) FROM incidents")[0][0]
    runs, succeeded = backend.query("SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'succeeded') "
                                    "FROM runs")[0]
    not_one = backend.query(
        "SELECT COUNT(*) FROM (SELECT i.id FROM incidents i LEFT JOIN runs r ON r.incident_id = i.id "
        "GROUP BY i.id HAVING COUNT(r.id) != 1) AS x")[0][0]
    print(f"  incidents     sent {incidents_sent}, recorded {incidents}")
    print(f"  actions run   {runs} ({succeeded} succeeded) for {incidents} incidents; "
          f"incidents without exactly one action run: {not_one}")
    print(f"  records lost  {acked - notifications} (sent {sent}, acknowledged {acked}, "
          f"rows {notifications})")
    return not_one == 0 and acked == notifications == sent and incidents == incidents_sent


# -- 1: acknowledgement latency and throughput ---------------------------------------------------------


def bench_latency(args: argparse.Namespace, kind: str) -> bool:
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    backend = Backend(kind, tmp)
    server = None
    try:
        server = Webhook(backend, args.threads)
        port = server.port
        sent = acked = incidents_sent = 0

        def phase(first: int, rate: float | None):
            nonlocal sent, acked, incidents_sent
            bodies = [notification(first + i) for i in range(args.incidents)]
            reqs = [request_bytes(port, b) for _ in range(args.deliveries) for b in bodies]  # interleaved
            result = load(port, reqs, args.connections, args.time_limit, rate)
            sent += len(reqs)
            acked += result[2].get(200, 0)
            incidents_sent += args.incidents
            return result

        warm = [request_bytes(port, notification(10_000_000 + i)) for i in range(300)]
        warm_result = load(port, warm, 4, 30)  # counted in the totals, not in the figures
        sent, acked, incidents_sent = len(warm), warm_result[2].get(200, 0), len(warm)

        print(f"{kind}: {args.incidents} incidents x {args.deliveries} deliveries per phase (interleaved), "
              f"{args.connections} keep-alive connections from a second process, {args.threads} server "
              f"threads, {os.cpu_count()} CPUs")
        cpu0 = server_cpu(server.proc.pid)
        paced = phase(0, args.rate)
        cpu1 = server_cpu(server.proc.pid)
        saturated = phase(1_000_000, None)
        cpu2 = server_cpu(server.proc.pid)
        health: dict = {}
        drain_deadline = time.monotonic() + 60
        while time.monotonic() < drain_deadline:
            health = server.health()
            if health["queue_depth"] == 0:
                break
            time.sleep(0.2)
    finally:
        if server is not None:
            server.stop()
    try:
        paced_rate, paced_p99 = summary(f"paced {args.rate:g}/s", *paced)
        max_rate, _ = summary("saturated", *saturated)
        # the server's CPU per notification (HTTP, validation, the store, metrics, and the
        # worker running each new incident's action): what decides where saturation lies
        print(f"  server CPU    {(cpu1 - cpu0) / len(paced[1]) * 1000:.3f} ms/notification paced, "
              f"{(cpu2 - cpu1) / len(saturated[1]) * 1000:.3f} ms saturated")
        ok = check_records(backend, sent, acked, incidents_sent)
        print(f"  queue at end  {health.get('queue_depth')}")
        goal = paced_rate >= 0.98 * args.rate and paced_p99 < 25 and max_rate >= 1000
        print(f"  correctness   {'OK' if ok else 'FAILED'}; goal (>= 1000/s, p99 < 25 ms at "
              f"{args.rate:g}/s): {'met' if goal else 'NOT met'}")
        print(f"  {LAST_ROUND}")
        return ok
    finally:
        backend.close()


BARE_APP = """
import logging, sys
from flask import Flask, Response, request
from waitress import serve
app = Flask("bare")
@app.post("/alerts")
def alerts():
    request.get_data()
    return Response('{"status":"recorded"}', content_type="application/json")
sys.setswitchinterval(0.001)
logging.getLogger("waitress.queue").setLevel(logging.ERROR)
serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
"""


def reference(args: argparse.Namespace) -> None:
    """The same paced and saturated load against a bare waitress + Flask app."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port), str(args.threads)], cwd=ROOT)
    try:
        if not wait_up(f"http://127.0.0.1:{port}/alerts", server):  # GET: 405, and up
            raise SystemExit("the reference server did not start")
        reqs = [request_bytes(port, notification(i)) for _ in range(args.deliveries)
                for i in range(args.incidents)]
        load(port, reqs[:300], 4, 30)
        cpu0 = server_cpu(server.pid)
        paced = load(port, reqs, args.connections, args.time_limit, args.rate)
        cpu1 = server_cpu(server.pid)
        saturated = load(port, reqs, args.connections, args.time_limit)
        cpu2 = server_cpu(server.pid)
    finally:
        server.terminate()
        server.wait(15)
    print(f"reference: bare waitress + Flask ({args.threads} threads), no validation, no database")
    summary(f"paced {args.rate:g}/s", *paced)
    summary("saturated", *saturated)
    print(f"  server CPU    {(cpu1 - cpu0) / len(paced[1]) * 1000:.3f} ms/request paced, "
          f"{(cpu2 - cpu1) / len(saturated[1]) * 1000:.3f} ms saturated")


# -- 2: a flood: storage, loss and priorities ----------------------------------------------------------


class SlowSink(BaseHTTPRequestHandler):
    """A page receiver that takes its time (``delay`` seconds a page), as real ones do."""

    delay = 0.02

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a) -> None:
        pass


def flood_plan(tmp: Path, sink_url: str) -> Path:
    import yaml

    from canary_guard.plan import load_plan

    data = yaml.safe_load(load_plan().to_yaml())
    data["actions"]["page"]["url"] = sink_url
    path = tmp / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def bench_flood(args: argparse.Namespace, kind: str) -> bool:
    tmp = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    backend = Backend(kind, tmp)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), SlowSink)
    SlowSink.delay = args.page_delay
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    bindir = tmp / "bin"
    bindir.mkdir()
    record = tmp / "kubectl.record"
    (bindir / "kubectl").write_text(KUBECTL.format(python=sys.executable, record=str(record)))
    (bindir / "kubectl").chmod(stat.S_IRWXU)
    plan = flood_plan(tmp, f"http://127.0.0.1:{sink.server_address[1]}/page")
    server = None
    sizes: list[int] = []
    wal: list[int] = []
    rollback: dict[str, float] = {}
    stop = threading.Event()
    try:
        server = Webhook(backend, args.threads, plan, env={"PATH": f"{bindir}:{os.environ['PATH']}"})
        port = server.port
        total = int(args.flood_rate * args.seconds)
        # One in four deliveries opens an incident (a page); the others repeat recent ones.
        reqs = []
        for k in range(total):
            incident = k // 4 if k % 4 == 0 else max(0, k // 4 - (k % 4) * 7)
            reqs.append(request_bytes(port, notification(incident)))

        def sample() -> None:
            while not stop.wait(0.5):
                try:
                    sizes.append(backend.size())
                    wal.append(backend.wal_size())
                except Exception:  # noqa: BLE001 - a file in the middle of a checkpoint
                    pass

        def send_rollback() -> None:
            if stop.wait(args.rollback_at):
                return
            body = notification(99_999_999, action="rollback", alertname="CanaryErrorRateHigh")
            req = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
            rollback["sent"] = time.time()
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
            rollback["acked"] = time.time()

        threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=send_rollback)]
        for t in threads:
            t.start()
        print(f"{kind}: {args.seconds:g} s at {args.flood_rate:g} notifications/s ({total}; one in four a "
              f"new incident paging through a sink that takes {args.page_delay * 1000:g} ms), a rollback "
              f"notification at t={args.rollback_at:g} s; {args.threads} server threads")
        took, lat, statuses = load(port, reqs, 16, args.seconds + 60, args.flood_rate)
        stop.set()
        threads[1].join(60)
        deadline = time.monotonic() + 10
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        sizes.append(backend.size())
        health = server.health()
    finally:
        stop.set()
        if server is not None:
            server.stop()
        sink.shutdown()
    try:
        summary(f"flood {args.flood_rate:g}/s", took, lat, statuses)
        lines = record.read_text().splitlines() if record.exists() else []
        started = [float(line.split()[0]) for line in lines]
        mb = max(sizes) / 1e6
        print(f"  storage       largest {mb:.1f} MB on disk during the run ({len(sizes)} samples), "
              f"{sizes[-1] / 1e6:.1f} MB at the end; goal < 100 MB: {'met' if mb < 100 else 'NOT met'}")
        if kind == "postgres":
            print(f"  server WAL    largest {max(wal) / 1e6:.1f} MB (pg_wal: PostgreSQL's own, bounded by "
                  "its max_wal_size, 1 GB by default)")
        if "acked" in rollback and started:
            delay = started[0] - rollback["acked"]
            print(f"  rollback      sent at t={args.rollback_at:g} s, acknowledged in "
                  f"{(rollback['acked'] - rollback['sent']) * 1000:.0f} ms, kubectl started "
                  f"{delay:.2f} s after the acknowledgement; goal <= 2 s: "
                  f"{'met' if delay <= 2 else 'NOT met'}")
        else:
            print(f"  rollback      kubectl did not run (ack: {'acked' in rollback}); FAILED")
        acked = statuses.get(200, 0) + (1 if "acked" in rollback else 0)
        rows = backend.query("SELECT COUNT(*) FROM notifications")[0][0]
        print(f"  records lost  {acked - rows} (acknowledged {acked}, rows {rows}); queue at end "
              f"{health.get('queue_depth')} pages still to send")
        return acked == rows and bool(started)
    finally:
        backend.close()


# -- 3: slow connections at the front door --------------------------------------------------------------


async def _slow_clients(port: int, n: int, seconds: float, interval: float, sources: int) -> None:
    """Open ``n`` connections (from ``sources`` loopback addresses 127.0.1.x) that each send a
    request line, then a header byte every ``interval`` seconds, for ``seconds``; a connection
    the server closes is opened again."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
    end = time.monotonic() + seconds

    async def one(k: int) -> None:
        source = (f"127.0.1.{1 + k % sources}", 0)
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=source)
            except OSError:
                await asyncio.sleep(1)
                continue
            try:
                writer.write(b"POST /alerts HTTP/1.1\r\nX-Slow: ")
                await asyncio.sleep(interval * (k % 100) / 100)  # spread the trickle out
                while time.monotonic() < end:
                    writer.write(b"a")
                    await writer.drain()
                    try:  # the server closing the connection shows as EOF
                        if await asyncio.wait_for(reader.read(1), interval) == b"":
                            break
                    except TimeoutError:
                        pass
            except OSError:
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one(k) for k in range(n)))


def slow_process(port: int, n: int, seconds: float, interval: float, sources: int) -> None:
    asyncio.run(_slow_clients(port, n, seconds, interval, sources))


STOCK_SERVER = """
import logging, sys
from waitress import create_server
from canary_guard.plan import load_plan
from canary_guard.webhook.app import create_app
from canary_guard.webhook.config import WebhookConfig
app = create_app(load_plan(), WebhookConfig(db=sys.argv[2], token=sys.argv[4]))
logging.getLogger("waitress.queue").setLevel(logging.ERROR)
sys.setswitchinterval(0.001)
# last round's settings: stock waitress
create_server(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[3]), ident="canary-guard",
              max_request_body_size=4 << 20, connection_limit=1000, backlog=2048, channel_timeout=30,
              clear_untrusted_proxy_headers=True).run()
"""


GUNICORN_APP = """
import os
from canary_guard.plan import load_plan
from canary_guard.webhook.app import create_app
from canary_guard.webhook.config import WebhookConfig
app = create_app(load_plan(), WebhookConfig(db=os.environ["BENCH_DB"], token=os.environ["BENCH_TOKEN"]))
"""


def start_other(kind: str, port: int, db: str, threads: int, tmp: Path) -> subprocess.Popen:
    """Stock waitress (last round's settings) or gunicorn's threaded worker, serving the webhook."""
    if kind == "stock":
        return subprocess.Popen([sys.executable, "-c", STOCK_SERVER, str(port), db, str(threads), TOKEN],
                                cwd=ROOT, stderr=subprocess.DEVNULL)
    (tmp / "gunicorn_app.py").write_text(GUNICORN_APP)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        raise SystemExit("gunicorn is not installed in this environment: pip install 'gunicorn>=23,<24'")
    return subprocess.Popen([str(gunicorn), "-k", "gthread", "--threads", str(threads), "-w", "1",
                             "--worker-connections", "1000", "-b", f"127.0.0.1:{port}", "--chdir", str(tmp),
                             "gunicorn_app:app"], cwd=ROOT, stderr=subprocess.DEVNULL,
                            env={**os.environ, "BENCH_DB": db, "BENCH_TOKEN": TOKEN})


def bench_slow(args: argparse.Namespace, other: str | None) -> bool:
    import http.client

    tmp = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    backend = Backend("sqlite", tmp)
    server = proc = None
    ctx = mp.get_context("spawn")
    slow = None
    try:
        if other:
            port = free_port()
            proc = start_other(other, port, backend.db, args.threads, tmp)
            if not wait_up(f"http://127.0.0.1:{port}/healthz", proc):
                raise SystemExit(f"the {other} server did not start")
        else:
            server = Webhook(backend, args.threads)
            port = server.port
        slow = ctx.Process(target=slow_process, args=(port, args.slow_connections, args.seconds, 8.0,
                                                      args.slow_sources))
        slow.start()
        time.sleep(5)  # let them connect
        latencies: list[float] = []
        failures: list[str] = []
        end = time.monotonic() + args.seconds - 10
        i = 0
        while time.monotonic() < end:
            body = notification(50_000_000 + i)
            # Alertmanager: another host than the slow clients (127.0.0.2)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/alerts", body=body, headers={
                    "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    failures.append(f"HTTP {resp.status}")
            except OSError as err:
                failures.append(f"{type(err).__name__} after {time.perf_counter() - t0:.1f}s")
            finally:
                conn.close()
            i += 1
            time.sleep(0.25)
    finally:
        if slow is not None:
            slow.join(args.seconds + 30)
            if slow.is_alive():
                slow.terminate()
        if server is not None:
            server.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        backend.close()
    ms = [x * 1000 for x in latencies]
    name = {"stock": "stock waitress (last round's settings)", "gunicorn": "gunicorn gthread (1 worker, "
            f"{args.threads} threads, 1,000 connections)", None: "the webhook's front door"}[other]
    print(f"{name}: {args.slow_connections} connections from {args.slow_sources} address(es), each "
          f"sending a header byte every 8 s for {args.seconds:g} s; a real notification every 0.25 s "
          f"from another address; {args.threads} server threads")
    good = bool(ms) and max(ms) < 1000 and not failures
    print(f"  real notifications  {len(ms)} acknowledged, {len(failures)} failed"
          + (f" ({', '.join(sorted(set(failures))[:3])})" if failures else "")
          + (f"; p50 {pct(ms, 50):.1f} ms  p99 {pct(ms, 99):.1f} ms  max {max(ms):.1f} ms" if ms else "")
          + f"; goal (every one acknowledged within 1 s): {'met' if good else 'NOT met'}")
    return good


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--incidents", type=int, default=1500, help="incidents per phase")
    ap.add_argument("--deliveries", type=int, default=4, help="deliveries of each incident")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=float, default=1000.0, help="offered load of the paced phase (/s)")
    ap.add_argument("--threads", type=int, default=4, help="webhook HTTP threads")
    ap.add_argument("--time-limit", type=float, default=60.0, help="per phase")
    ap.add_argument("--reference", action="store_true",
                    help="first measure a bare waitress + Flask app (reads the body, answers fixed "
                         "JSON) the same way: the floor this machine sets, right now")
    ap.add_argument("--flood", action="store_true", help="the storage and priority run")
    ap.add_argument("--flood-rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the flood or slow run")
    ap.add_argument("--rollback-at", type=float, default=55.0)
    ap.add_argument("--page-delay", type=float, default=0.02, help="seconds the page sink takes")
    ap.add_argument("--slow", action="store_true", help="the slow-connection run")
    ap.add_argument("--slow-connections", type=int, default=1100)
    ap.add_argument("--slow-sources", type=int, default=1,
                    help="loopback addresses the slow connections come from (127.0.1.x)")
    ap.add_argument("--compare", default="", metavar="stock,gunicorn",
                    help="slow run: first the same against stock waitress with last round's settings "
                         "and/or gunicorn's gthread worker (if installed)")
    args = ap.parse_args()
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    ok = True
    if args.slow:
        for other in filter(None, args.compare.split(",")):
            bench_slow(args, other)
        return 0 if bench_slow(args, None) else 1
    if args.flood:
        for kind in kinds:
            ok = bench_flood(args, kind) and ok
        return 0 if ok else 1
    if args.reference:
        reference(args)
    for kind in kinds:
        ok = bench_latency(args, kind) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
