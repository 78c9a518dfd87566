"""Time to rollback: from fault injection to the action having run, per trigger.

Brings up the demo's stack (sandboxes, exporter, webhook, a real Prometheus and
Alertmanager, all on loopback with the plan's fast demo settings), then for each trigger
injects its fault N times and reads, from the webhook's audit trail and the kubectl
stand-in's record, when the action ran. Each trigger is measured on its own: the plan keeps
only the measured triggers, so that the availability trigger (which a single failing
endpoint also breaks) does not act first. Runs rotate over the endpoints, so a run does not
wait for the previous run's alert to resolve (only for the webhook's cooldown to pass).

Beside the measurements it prints the floor that the settings allow:
  probes needed x probe interval + scrape interval + evaluation interval + the alert's `for`
  (for a trigger compared with the baseline, at least the baseline grace: probe + scrape +
  evaluation interval) + group_wait + action time
the ratio to it, and last round's medians (before the triggers compared with the baseline).
Goals (demo settings): null streak and PII <= 10 s, error rate <= 20 s, within 2x of the floor.

For a traffic trigger (``traffic_error_rate``: 5% of the canary's requests to one endpoint
fail, among the demo's simulated users) the floor is the time the failures take to push the
window's ratio over the threshold (threshold / failure share x window) + scrape + evaluation +
group_wait + action time; goal: <= 20 s.

  .venv/bin/python bench/bench_time_to_rollback.py [--runs 5] [--triggers null_streak,pii_exposure,error_rate]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from datetime import datetime
from typing import NamedTuple

import yaml
from canary_guard.demo import scenarios as sc
from canary_guard.demo.stack import Stack, missing_binaries

from canary_guard.plan import Plan, load_plan, parse_plan

GOALS = {"null_streak": 10.0, "pii_exposure": 10.0, "error_rate": 20.0, "traffic_error_rate": 20.0}
# medians measured before the triggers waited for the baseline (README, "Measured")
LAST_ROUND = {"pii_exposure": 2.8, "null_streak": 5.9, "error_rate": 5.1}
# pii disables features; traffic triggers run simulated users, whose requests would take the
# probe scenarios' counted faults: both last
ORDER = ("error_rate", "availability", "null_streak", "pii_exposure", "traffic_error_rate")


def isolated_plan(plan: Plan, names: list[str]) -> Plan:
    data = yaml.safe_load(plan.to_yaml())
    data["triggers"] = [t for t in data["triggers"] if t["name"] in names]
    return parse_plan(data, "bench plan")


def seconds_to_breach(plan: Plan, name: str, s: sc.Scenario) -> float:
    """Time from the fault until the failures can push the window over the threshold."""
    t = next(t for t in plan.triggers if t.name == name)
    if t.source == "traffic":  # the window fills with failures at the fault's share
        return (t.threshold or 0) / s.faults[0]["rate"] * plan.trigger_window(t)
    return probes_needed(plan, name) * plan.probe.interval


def probes_needed(plan: Plan, name: str) -> int:
    t = next(t for t in plan.triggers if t.name == name)
    if t.kind == "null_streak":
        return int(t.threshold) + 1
    if t.kind == "pii_exposure":
        return int(t.threshold or 0) + 1
    if t.kind == "error_rate":  # with the window full, the failures that push the ratio over
        return math.floor(t.threshold * plan.trigger_window(t) / plan.probe.interval) + 1
    if t.kind == "availability":
        return math.floor((1 - t.threshold) * len(plan.endpoints) * plan.trigger_window(t)
                          / plan.probe.interval) + 1
    raise ValueError(f"{name}: no floor for kind {t.kind}")


def epoch(rfc3339: str) -> float:
    # Prometheus: 2026-11-27T09:00:35.06614674Z (nanoseconds: keep microseconds)
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def one_run(stack: Stack, s: sc.Scenario, endpoint: str, timeout: float = 60.0) -> dict:
    """Inject the fault into one endpoint; return the timestamps of each stage."""
    runs0 = {a["id"] for a in stack.actions()}
    calls0 = len(stack.kubectl_calls())
    faults = [{**f, "endpoint": endpoint} for f in s.faults]
    t0 = time.time()
    for f in faults:
        stack.inject(f)
    out: dict = {"fault": t0}
    deadline = t0 + timeout
    while time.time() < deadline:
        if "firing" not in out:
            for a in stack.prometheus_alerts():
                lab = a["labels"]
                if lab.get("alertname") == s.alert and lab.get("endpoint") == endpoint \
                        and a["state"] == "firing":
                    out["firing"] = epoch(a["activeAt"])
        done = [a for a in stack.actions() if a["id"] not in runs0 and a["status"] == "succeeded"]
        if done and len(stack.kubectl_calls()) > calls0:
            run = done[0]
            out["notified"] = run["created_at"]
            out["kubectl"] = stack.kubectl_calls()[calls0]["time"]
            out["done"] = run["finished_at"]
            steps = [a for a in run["attempts"] if a.get("started_at") and a.get("finished_at")]
            out["action_time"] = sum(a["finished_at"] - a["started_at"] for a in steps)
            out["alert"] = run["incident"]["alertname"]
            break
        time.sleep(0.05)
    stack.clear_faults()
    disabled = stack.disabled_features()
    if disabled:
        stack.enable_features(disabled)
    if "done" not in out:
        raise RuntimeError(f"{s.name} on {endpoint}: no action within {timeout:.0f}s\n"
                           f"{stack.tail('webhook')}")
    return out


class Row(NamedTuple):
    """One trigger's measurement (seconds; medians unless named otherwise)."""

    name: str
    alert: str
    runs: int
    median: float
    max: float
    floor: float
    ratio: float
    firing: float      # fault -> Prometheus' activeAt
    notified: float    # activeAt -> the webhook's record
    done: float        # record -> action finished
    goal: float | None


def measure(stack: Stack, names: list[str], runs: int, say=print) -> list[Row]:
    """Measure each trigger of ``names`` ``runs`` times, one fault at a time, on a started stack."""
    rows = []
    demo = stack.plan
    started = time.time()
    scen = {s.name: s for s in sc.build(demo)}
    endpoints = [e.name for e in demo.endpoints]
    cooldown = demo.webhook.cooldown
    last_action = 0.0
    say(f"settings: probe {demo.probe.interval:g}s, scrape {demo.prometheus.scrape_interval:g}s, "
        f"eval {demo.prometheus.evaluation_interval:g}s, group_wait {demo.alertmanager.group_wait:g}s, "
        f"cooldown {cooldown:g}s; {runs} runs per trigger; triggers measured one at a time")
    for name in names:
        s = scen[name]
        if s.traffic and not stack.components["traffic"].running:
            stack.start_component("traffic")  # the demo's simulated users
            started = time.time()
        warm = started + s.warmup + 2 - time.time()
        if warm > 0:
            trig = next(t for t in demo.triggers if t.name == name)
            what = "the users' requests" if s.traffic else f"min_probes ({demo.min_probes(trig)}) probes"
            say(f"{name}: waiting {warm:.0f}s until the window holds {what}")
            time.sleep(warm)
        results = []
        for i in range(runs):
            wait = last_action + cooldown + 1.0 - time.time()
            if wait > 0:
                time.sleep(wait)  # the webhook refuses a second rollback inside the cooldown
            # a random phase against the probe schedule: a fault does not wait for a probe
            time.sleep(random.uniform(0, demo.probe.interval))
            ep = endpoints[i % len(endpoints)]
            r = one_run(stack, s, ep)
            last_action = r["done"]
            results.append(r)
            t = {k: r[k] - r["fault"] for k in ("notified", "kubectl", "done")}
            t["firing"] = r.get("firing", r["fault"]) - r["fault"]
            say(f"  {name} run {i + 1} ({ep}): since the fault: firing {t['firing']:.2f}s, "
                f"notified {t['notified']:.2f}s, kubectl ran {t['kubectl']:.2f}s, "
                f"action done {t['done']:.2f}s ({r['alert']})")
            if name == "pii_exposure":
                started = time.time()  # every feature was disabled: counted probes start again
        total = [r["done"] - r["fault"] for r in results]
        action = statistics.median(r["action_time"] for r in results)
        p = demo.prometheus
        trig = next(t for t in demo.triggers if t.name == name)
        floor = (seconds_to_breach(demo, name, s) + p.scrape_interval
                 + p.evaluation_interval + demo.trigger_for(trig) + demo.alertmanager.group_wait
                 + action)
        med = statistics.median(total)
        rows.append(Row(name, s.alert, len(total), med, max(total), floor, med / floor,
                        statistics.median(r["firing"] - r["fault"] for r in results if "firing" in r),
                        statistics.median(r["notified"] - r.get("firing", r["fault"]) for r in results),
                        statistics.median(r["done"] - r["notified"] for r in results),
                        GOALS.get(name)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--triggers", default="null_streak,pii_exposure,error_rate")
    ap.add_argument("--plan", default=None)
    args = ap.parse_args(argv)
    if missing_binaries():
        print("needs prometheus and prometheus-alertmanager: apt-get update && apt-get install -y "
              "prometheus prometheus-alertmanager", file=sys.stderr)
        return 1
    names = [n for n in ORDER if n in args.triggers.split(",")]
    names += [n for n in args.triggers.split(",") if n not in names]
    plan = isolated_plan(load_plan(args.plan), names)
    with Stack(plan, log=lambda m: None) as stack:
        rows = measure(stack, names, args.runs)
    print()
    head = ("trigger", "runs", "median", "max", "floor", "ratio", "firing", "+notified", "+done",
            "last round", "goal")
    print("  ".join(f"{h:>10}" if i else f"{h:<14}" for i, h in enumerate(head)))
    ok = True
    for name, _alert, n, med, mx, floor, ratio, firing, notified, done, goal in rows:
        met = goal is None or (mx <= goal and ratio <= 2.0)
        ok &= met
        goal_s = "-" if goal is None else f"<={goal:g}s {'ok' if met else 'MISSED'}"
        last = f"{LAST_ROUND[name]:.1f}s" if name in LAST_ROUND else "-"
        print(f"{name:<14}  {n:>10}  {med:>9.2f}s  {mx:>9.2f}s  {floor:>9.2f}s  {ratio:>9.2f}x  "
              f"{firing:>9.2f}s  {notified:>9.2f}s  {done:>9.2f}s  {last:>10}  {goal_s:>10}")
    print("\nfloor = probes needed x probe interval (traffic: threshold / failure share x window) + scrape"
          " + evaluation + the alert's for (baseline grace) + group_wait + action time;"
          "\nstages (medians): firing = fault to Prometheus' activeAt; +notified = then to the webhook's "
          "record;\n+done = then to the action finished")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
