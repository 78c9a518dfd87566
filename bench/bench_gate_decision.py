"""What one gate decision costs the rollout: the gate as a process (the rollout's default)
against a running `gate serve` (--gate-url), and the bare Prometheus queries as the floor.

A real Prometheus holds two hours of backfilled probe data for the ten endpoints of the
shipped plan (tests/gate_backfill.py, one probe per second per endpoint); each way is asked
for the same decision N times, in turn, in this process. Prints wall-clock time per decision
(median, p90) and the ratio to the floor. Decisions come minutes apart (gate_interval), so the
question is whether either way is worth worrying about.

  .venv/bin/python bench/bench_gate_decision.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from gate_backfill import Scenario, backfill, write_openmetrics  # noqa: E402

from canary_guard.plan import load_plan  # noqa: E402

H = 3600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(name: str, times: list[float], floor: float | None) -> str:
    med = statistics.median(times)
    p90 = sorted(times)[int(0.9 * (len(times) - 1))]
    ratio = f"  {med / floor:5.1f}x the floor" if floor else ""
    return f"{name:<34} median {med * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms{ratio}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        print("prometheus and promtool are needed (scripts/install-debs)", file=sys.stderr)
        return 1
    plan = load_plan()
    endpoints = tuple(e.name for e in plan.endpoints)
    at = float(int(time.time() // 60 * 60 - 3 * H))
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        root = Path(tmp)
        data = yaml.safe_load(plan.to_yaml())
        for ph in data["phases"]:
            ph["duration"] = 3600 if ph.get("duration") else None
            ph.setdefault("criteria", {})["window"] = 3600
        plan_file = root / "plan.yaml"
        plan_file.write_text(yaml.safe_dump(data, sort_keys=False))
        write_openmetrics([Scenario("canary", endpoints, at - 2 * H, at, 3600),
                           Scenario("stable", endpoints, at - 2 * H, at, 3600, seed=2)], root / "data.om")
        backfill(promtool, root / "data.om", root / "tsdb")
        (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
        port, gport = free_port(), free_port()
        prom = f"http://127.0.0.1:{port}"
        try:
            procs.append(subprocess.Popen(
                [prometheus, f"--config.file={root / 'prometheus.yml'}",
                 f"--storage.tsdb.path={root / 'tsdb'}", "--storage.tsdb.retention.time=30d",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait(f"{prom}/-/ready")
            gate = f"http://127.0.0.1:{gport}"
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "canary_guard", "gate", "serve", "--plan", str(plan_file),
                 "--prometheus", prom, "--listen", f"127.0.0.1:{gport}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait(f"{gate}/healthz")
            argv = [sys.executable, "-m", "canary_guard", "gate", "--plan", str(plan_file),
                    "--prometheus", prom, "--phase", "1", "--at", str(at), "--json"]

            def process():
                done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stdout[-500:] + done.stderr[-500:]

            client = httpx.Client(timeout=120)

            def served():
                resp = client.get(f"{gate}/gate", params={"phase": "1", "at": str(at)})
                assert resp.status_code == 200, resp.text[:500]

            # what gate/prom.py's fetch_window asks, over the phase's 1h window
            hist = "canary_probe_duration_seconds"
            queries = ["sum by (track, endpoint, outcome) (increase(canary_probes_total[1h]))",
                       f"sum by (track, endpoint, le) (increase({hist}_bucket[1h]))",
                       f"sum by (track, endpoint) (increase({hist}_sum[1h]))",
                       f"sum by (track, endpoint) (increase({hist}_count[1h]))"]

            def floor():
                for q in queries:
                    client.post(f"{prom}/api/v1/query", data={"query": q, "time": str(at)}).raise_for_status()

            for fn in (process, served, floor):  # warm Prometheus's caches and the server
                fn()
            results: dict[str, list[float]] = {"process": [], "served": [], "floor": []}
            for _ in range(args.runs):  # interleaved, so that load on the machine hits all alike
                results["process"] += timed(process, 1)
                results["served"] += timed(served, 1)
                results["floor"] += timed(floor, 1)
            client.close()
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    base = statistics.median(results["floor"])
    print(f"one promote decision, plan {plan.name}: {len(endpoints)} endpoints x 2 tracks, 1h window, "
          f"{args.runs} runs each")
    print(summary("the 4 Prometheus queries (floor)", results["floor"], None))
    print(summary("gate serve (GET /gate)", results["served"], base))
    print(summary("gate as a process (rollout default)", results["process"], base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
