"""Benchmark: how many Alertmanager notifications per second the webhook acknowledges, and how fast.

Starts ``canary-guard webhook`` (the real service: waitress, Flask, SQLite audit log on) on
loopback, then drives it from a second process: a small asyncio HTTP/1.1 client with
keep-alive connections, like Alertmanager's. The load is bounded in count and in time.

Each of ``--incidents`` incidents is delivered ``--deliveries`` times (Alertmanager retries,
repeat_interval and an HA pair all deliver the same alert again), interleaved, so most
notifications are duplicates that must be dropped. Every incident's action is ``page``
(recorded), so the worker runs one action per incident without touching anything.

Afterwards the database is read directly: every acknowledged notification must be a row
("records lost" counts the missing ones) and every incident must have exactly one action run.

    .venv/bin/python bench/bench_webhook.py [--incidents 1500] [--deliveries 4] [--connections 16]
        [--reference]   # also measure a bare waitress + Flask app: this machine's floor, now
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

TOKEN = "bench-token"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notification(i: int) -> bytes:
    """One realistic notification (about 1 KB) for incident i."""
    endpoint = ["edge_ai", "homomorphic", "neuromorphic", "graph_neural"][i % 4]
    labels = {"alertname": "CanaryLatencyHigh", "action": "page", "severity": "warning",
              "track": "canary", "endpoint": endpoint, "trigger": "latency_high", "incident": str(i)}
    body = {
        "receiver": "canary-guard", "status": "firing", "version": "4",
        "groupKey": '{}/{severity=~"critical|warning"}:{alertname="CanaryLatencyHigh"}',
        "truncatedAlerts": 0, "externalURL": "http://alertmanager:9093",
        "groupLabels": {"alertname": "CanaryLatencyHigh"}, "commonLabels": labels,
        "commonAnnotations": {"summary": f"average latency above 1s on {endpoint}"},
        "alerts": [{
            "status": "firing", "labels": labels,
            "annotations": {"summary": f"average latency above 1s on {endpoint}",
                            "description": "canary average latency over 5m is 1.3s (threshold 1s)",
                            "runbook_url": "https://github.com/canary-guard/canary-guard/blob/main/docs/runbook.md"},
            "startsAt": "2024-05-01T12:00:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
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
    proc = ctx.Process(target=client_process,
                       args=(port, requests, connections, time_limit, rate, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/alerts", timeout=1)
            except urllib.error.HTTPError:
                break  # 405 for GET: it is up
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the reference server did not start") from None
                time.sleep(0.1)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--incidents", type=int, default=1500, help="incidents per phase")
    ap.add_argument("--deliveries", type=int, default=4, help="deliveries of each incident")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=float, default=1000.0, help="offered load of the paced phase (/s)")
    ap.add_argument("--threads", type=int, default=4, help="webhook HTTP threads")
    ap.add_argument("--time-limit", type=float, default=60.0, help="per phase")
    ap.add_argument("--reference", action="store_true",
                    help="first measure a bare waitress + Flask app (reads the body, answers fixed "
                         "JSON) the same way: the floor this machine sets, right now")
    args = ap.parse_args()
    if args.reference:
        reference(args)

    tmp = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    db = tmp / "webhook.db"
    port = free_port()
    env = {**os.environ, "CANARY_GUARD_WEBHOOK_TOKEN": TOKEN}
    log = open(tmp / "webhook.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "canary_guard", "--log-level", "warning", "webhook", "--listen",
         f"127.0.0.1:{port}", "--db", str(db), "--threads", str(args.threads)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    sent = acked = 0
    incidents_sent = 0

    def phase(first: int, rate: float | None):
        nonlocal sent, acked, incidents_sent
        bodies = [notification(first + i) for i in range(args.incidents)]
        # interleaved: each incident's deliveries are spread over the phase
        reqs = [request_bytes(port, b) for _ in range(args.deliveries) for b in bodies]
        result = load(port, reqs, args.connections, args.time_limit, rate)
        sent += len(reqs)
        acked += result[2].get(200, 0)
        incidents_sent += args.incidents
        return result

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print((tmp / "webhook.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.1)

        warm = [request_bytes(port, notification(10_000_000 + i)) for i in range(300)]
        warm_result = load(port, warm, 4, 30)  # counted in the totals, not in the figures
        sent, acked, incidents_sent = len(warm), warm_result[2].get(200, 0), len(warm)

        print(f"webhook benchmark: {args.incidents} incidents x {args.deliveries} deliveries per phase "
              f"(interleaved), {args.connections} keep-alive connections from a second process, "
              f"{args.threads} server threads, {os.cpu_count()} CPUs, SQLite audit log on")
        cpu0 = server_cpu(server.pid)
        paced = phase(0, args.rate)
        cpu1 = server_cpu(server.pid)
        saturated = phase(1_000_000, None)
        cpu2 = server_cpu(server.pid)

        health = {}
        drain_deadline = time.monotonic() + 60
        while time.monotonic() < drain_deadline:
            health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5))
            if health["queue_depth"] == 0:
                break
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(15)
        log.close()

    paced_rate, paced_p99 = summary(f"paced {args.rate:g}/s", *paced)
    max_rate, _ = summary("saturated", *saturated)
    # the server's CPU per notification (HTTP, validation, SQLite, metrics, and the worker
    # running each new incident's action): the figure that decides where saturation lies
    print(f"  server CPU    {(cpu1 - cpu0) / len(paced[1]) * 1000:.3f} ms/notification paced, "
          f"{(cpu2 - cpu1) / len(saturated[1]) * 1000:.3f} ms saturated")

    conn = sqlite3.connect(db)
    notifications = conn.execute("SELECT COUNT(*) FROM notifications").fetchone()[0]
    incidents = conn.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
    runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    succeeded = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'succeeded'").fetchone()[0]
    not_one = conn.execute(
        "SELECT COUNT(*) FROM (SELECT i.id FROM incidents i LEFT JOIN runs r ON r.incident_id = i.id "
        "GROUP BY i.id HAVING COUNT(r.id) != 1)").fetchone()[0]
    print(f"  incidents     sent {incidents_sent}, recorded {incidents}")
    print(f"  actions run   {runs} ({succeeded} succeeded) for {incidents} incidents; "
          f"incidents without exactly one action run: {not_one}")
    print(f"  records lost  {acked - notifications} (sent {sent}, acknowledged {acked}, "
          f"rows {notifications}); queue at end {health.get('queue_depth')}")
    ok = not_one == 0 and acked == notifications == sent and incidents == incidents_sent
    goal = paced_rate >= 0.98 * args.rate and paced_p99 < 25 and max_rate >= 1000
    print(f"  correctness   {'OK' if ok else 'FAILED'}; goal (>= 1000/s, p99 < 25 ms at "
          f"{args.rate:g}/s): {'met' if goal else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
