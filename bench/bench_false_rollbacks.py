"""False rollbacks: a long quiet run of two healthy releases, then the time to roll back a fault.

Brings up the demo's stack with the shipped plan (two simulated RecoveryOS sandboxes running the
same code, with the real service's fields and latency profile; exporter, webhook, a real
Prometheus and Alertmanager, all on loopback) and guards it, untouched, for ``--minutes`` of
probes. It prints how many alerts fired, how many pages and rollbacks the webhook ran and what
the gate answers: on two healthy releases every figure but the probes must be 0 (and the gate
promote or hold).

``--speedup K`` accelerates the run: probes, scrapes and evaluations K times as often (the
windows, derived from the probe rate, shrink with them), so ``--minutes 30 --speedup 2`` is 30
minutes of the demo's 1 s probes (1,800 per endpoint and track) in 15 minutes of wall time. The
service's latencies are not accelerated: homomorphic still takes ~0.45 s (its probes then skip
ticks while busy, as they would at any rate). ``--contention F`` runs both sandboxes with
``--slowdown F`` (a busier machine: F = 1.5 gives homomorphic a p95 of ~1.4 s).

Then, unless ``--no-faults``, it runs bench_time_to_rollback.py (its own stack) and prints the
time from each fault to its action beside last round's figures.

  .venv/bin/python bench/bench_false_rollbacks.py [--minutes 30] [--speedup 1] [--contention 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import yaml
from canary_guard.demo import timeline
from canary_guard.demo.stack import CLI, Stack, http_get, missing_binaries

from canary_guard.plan import load_plan, parse_plan

HERE = Path(__file__).parent


def accelerated(speedup: float):
    plan = load_plan()
    if speedup == 1:
        return plan
    data = yaml.safe_load(plan.to_yaml())
    demo = data["demo"]
    for key in ("probe_interval", "scrape_interval", "evaluation_interval"):
        demo[key] = demo[key] / speedup
    return parse_plan(data, f"shipped plan, demo settings x{speedup:g}")


def count_over(stack: Stack, expr: str) -> list[dict]:
    url = f"{stack.prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}"
    return http_get(url, timeout=30)["data"]["result"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="minutes of probes (default 30)")
    ap.add_argument("--speedup", type=float, default=1.0, help="probe/scrape/eval K times as often")
    ap.add_argument("--contention", type=float, default=1.0, help="sandbox --slowdown for both tracks")
    ap.add_argument("--no-faults", action="store_true", help="skip the time-to-rollback part")
    ap.add_argument("--runs", type=int, default=5, help="time-to-rollback runs per fault (default 5)")
    args = ap.parse_args(argv)
    if missing_binaries():
        print("needs prometheus and prometheus-alertmanager: apt-get update && apt-get install -y "
              "prometheus prometheus-alertmanager", file=sys.stderr)
        return 1
    if args.speedup < 1 or args.contention < 1 or args.minutes <= 0:
        print("--speedup and --contention must be >= 1, --minutes > 0", file=sys.stderr)
        return 2
    plan = accelerated(args.speedup)
    wall = args.minutes * 60 / args.speedup
    stack = Stack(plan, log=lambda m: None, sandbox_args=["--slowdown", f"{args.contention:g}"])
    print(f"quiet run: {args.minutes:g} minutes of probes at {plan.demo.probe_interval:g}s "
          f"(demo settings x{args.speedup:g}), {wall / 60:.1f} minutes of wall time, sandboxes "
          f"--slowdown {args.contention:g}")
    with stack:
        t0 = time.time()
        first_seen: dict[str, str] = {}  # alert -> when it was first seen firing, and why
        while time.time() - t0 < wall:
            for a in stack.prometheus_alerts():
                lab = a["labels"]
                key = "/".join(lab.get(k, "") for k in ("alertname", "track", "endpoint"))
                if a["state"] == "firing" and key not in first_seen:
                    extra = {k: v for k, v in lab.items() if k in ("reason", "instance")}
                    first_seen[key] = (f"at {time.time() - t0:.0f}s of {wall:.0f}s, value "
                                       f"{float(a['value']):g}, {extra}, load {os.getloadavg()[0]:.1f}")
            time.sleep(min(2.0, max(0.0, wall - (time.time() - t0))))
        elapsed = int(time.time() - t0) + 1
        fired = count_over(stack, f'max_over_time(ALERTS{{alertstate="firing"}}[{elapsed}s])')
        pending = count_over(stack, f'max_over_time(ALERTS{{alertstate="pending"}}[{elapsed}s])')
        runs = stack.actions()
        pages = [r for r in runs if r["action"] == "page"]
        rollbacks = len(stack.kubectl_calls())
        probes = {t: timeline.probe_counters(stack.exporter_metrics(), t) for t in ("canary", "stable")}
        gate = subprocess.run([*CLI, "gate", "--plan", str(stack.plan_file), "--prometheus",
                               stack.prometheus_url, "--phase", "1", "--json"],
                              capture_output=True, text=True, timeout=120)
        decision = json.loads(gate.stdout)["decision"] if gate.stdout.startswith("{") else gate.stderr
    def name(r: dict) -> str:
        return "/".join(r["metric"].get(k, "") for k in ("alertname", "track", "endpoint"))

    c, s = probes["canary"], probes["stable"]
    print(f"  probes:            canary {c['probes']:.0f}, stable {s['probes']:.0f} "
          f"(errors {c['error'] + s['error']:.0f}, nulls {c['null'] + s['null']:.0f})")
    print(f"  alerts fired:      {len(fired)} {sorted(name(r) for r in fired) or ''}")
    for key, when in sorted(first_seen.items()):
        print(f"    {key}: first seen firing {when}")
    print(f"  alerts pending:    {len(pending)} {sorted(name(r) for r in pending) or ''} (never fired)")
    print(f"  pages:             {len(pages)}")
    print(f"  rollbacks:         {rollbacks}   <- false rollbacks (last round: 5 in 11 minutes)")
    print(f"  gate, phase 1:     {decision}")
    ok = not fired and not runs and rollbacks == 0 and decision in ("promote", "hold")
    if not args.no_faults:
        print("\ntime to rollback (bench_time_to_rollback.py, demo settings):", flush=True)
        ok &= subprocess.run([sys.executable, str(HERE / "bench_time_to_rollback.py"), "--runs",
                              str(args.runs)]).returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
