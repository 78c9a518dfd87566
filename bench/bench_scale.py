"""Time to rollback at scale: 1,000 endpoints per track, ten faults at once, sharded probing.

Builds a plan of N endpoints per track (canary and stable: the shipped plan's ten elite
endpoints, then copies of them under other paths, each with its own feature flag) and runs
the demo's whole loop on loopback with it, at the demo's intervals (probe, scrape and
evaluation every 1 s): one sandbox per track serving every endpoint, the exporter (one
process, then N shards with ``--shard``), a real Prometheus with the generated rules, a real
Alertmanager and the webhook. Then, several times, it breaks ten canary endpoints at the same
moment with mixed faults (null bodies, HTTP 500s, PII) and prints:

- per fault: the time from the fault to the webhook's first run for that incident having
  finished (its action, or its refusal by the deployment's cooldown: one deployment is
  rolled back once), in stages (Prometheus' activeAt, the webhook's record, the run), and
  whether the fault got exactly one run; runs nobody asked for (a healthy endpoint rolled
  back) are listed loudly;
- per fault kind: p50/p99 over every run, against the quiet ten-endpoint median measured in
  the same process first (bench_time_to_rollback's measure, one fault at a time); when the
  p99 exceeds 1.5x that median, which stage grew and by how much;
- CPU (cores) and peak memory of each component during the faults; the probes the exporter
  did against those it was asked for; Prometheus' rule-group evaluation time
  (prometheus_rule_group_last_duration_seconds, sampled), its slowest rules, missed
  iterations, and the scrape duration of each exporter.

Two changes to the shipped plan, both so that every fault can be measured: the cooldown is
the production one (10 min) rather than the demo's 5 s, so that ten incidents in the same
minute give one rollback and nine refusals, as in production; and the emergency rollback
disables the alerting endpoint's feature, not every feature, because switching all 1,000
endpoints off would hide the other nine faults before their alerts fire.

    .venv/bin/python bench/bench_scale.py                     # 1,000 endpoints: ~10 minutes
    .venv/bin/python bench/bench_scale.py --endpoints 100 --reference-runs 0 --runs 1
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import yaml
from bench_time_to_rollback import ORDER, epoch, isolated_plan, measure
from canary_guard.demo import scenarios as sc
from canary_guard.demo.stack import HOST, Stack, http_get, missing_binaries

from canary_guard.plan import Plan, load_plan, parse_plan

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# fault kind -> the shipped plan's trigger it breaks
KINDS = {"null": "null_streak", "error": "error_rate", "pii": "pii_exposure"}
# last round's quiet ten-endpoint medians (README), used when --reference-runs 0
LAST_ROUND = {"pii_exposure": 2.8, "null_streak": 5.9, "error_rate": 5.1}
TARGET_RATIO = 1.5


# -- the plan ------------------------------------------------------------------------------------

def scale_plan(base: Plan, n: int) -> Plan:
    """``base`` with ``n`` endpoints: its own, then copies under /tNNN/... with their own flags.

    The demo cooldown becomes the plan's production cooldown, and a disable of every feature
    becomes a disable of the alerting endpoint's (see the module docstring).
    """
    data = yaml.safe_load(base.to_yaml())
    originals = data["endpoints"]
    endpoints = []
    for i in range(n):
        ep = dict(originals[i % len(originals)])
        copy = i // len(originals)
        if copy:
            ep["name"] = f"{ep['name']}_{copy:03d}"
            ep["path"] = f"/t{copy:03d}{ep['path']}"
            if ep.get("feature"):
                ep["feature"] = f"{ep['feature']}_{copy:03d}"
            ep.pop("learned", None)
        endpoints.append(ep)
    data["endpoints"] = endpoints
    for action in data["actions"].values():
        if action.get("kind") == "disable_feature" and action.get("features") == "all":
            action["features"] = "alert"
    data.setdefault("demo", {})["cooldown"] = base.webhook.cooldown
    return parse_plan(data, f"{base.name} x{n}")


# -- what each process uses -------------------------------------------------------------------------

def proc_sample(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, rss


def run_queue_wait(pid: int) -> float:
    """Seconds the process's threads have waited for a CPU while runnable (schedstat), summed."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                pass  # a thread that just ended
    except OSError:
        return 0.0
    return total / 1e9


def started_at(pid: int) -> float:
    """When a process started, epoch seconds (its start time since boot, from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    return boot + ticks / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU since boot."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def prom_text(url: str) -> dict[str, float]:
    """A Prometheus /metrics page as {series: value} (the few families read here)."""
    out = {}
    for line in http_get(url, timeout=5).splitlines():
        if line.startswith(("prometheus_rule_group", "prometheus_tsdb_head_series")):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def group_of(series: str) -> str:
    """The short name of a rule group series: ...{rule_group="FILE;canary-guard-PLAN-recording"}."""
    return series.split('rule_group="', 1)[1].split('"', 1)[0].rsplit("-", 1)[-1]


@dataclass
class Window:
    """What was sampled between start() and stop()."""

    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)      # component -> cores
    waited: dict[str, float] = field(default_factory=dict)   # component -> threads waiting for a CPU
    rss: dict[str, int] = field(default_factory=dict)        # component -> peak bytes
    machine: float = 0.0                                     # all CPUs busy, in cores
    groups: dict[str, list[float]] = field(default_factory=dict)   # group -> eval seconds samples
    rules: dict[str, list[float]] = field(default_factory=dict)    # rule -> eval seconds samples
    interval: dict[str, float] = field(default_factory=dict)       # group -> configured interval
    missed: dict[str, float] = field(default_factory=dict)         # group -> iterations missed
    iterations: dict[str, float] = field(default_factory=dict)     # group -> iterations
    load: tuple[float, float] = (0.0, 0.0)                         # 1-min load average at start, end


class Sampler:
    """Samples every component's CPU and memory, and Prometheus' rule evaluation, every second."""

    def __init__(self, stack: Stack, every: float = 1.0):
        self.stack, self.every = stack, every
        self.pids = {name: c.proc.pid for name, c in stack.components.items() if c.proc}
        self.pids["bench (driver)"] = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.w = Window()

    def start(self) -> Sampler:
        self._t0 = time.monotonic()
        self._cpu0 = {n: s[0] for n, p in self.pids.items() if (s := proc_sample(p))}
        self._wait0 = {n: run_queue_wait(p) for n, p in self.pids.items()}
        self._busy0 = machine_busy()
        self._prom0 = self._prom_counters()
        self.w.load = (os.getloadavg()[0], 0.0)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sampler")
        self._thread.start()
        return self

    def _prom_counters(self) -> dict[str, float]:
        try:
            return prom_text(f"{self.stack.prometheus_url}/metrics")
        except OSError:
            return {}

    def _loop(self) -> None:
        n = 0
        while not self._stop.wait(self.every):
            n += 1
            for name, pid in self.pids.items():
                s = proc_sample(pid)
                if s:
                    self.w.rss[name] = max(self.w.rss.get(name, 0), s[1])
            for key, value in self._prom_counters().items():
                if key.startswith("prometheus_rule_group_last_duration_seconds"):
                    self.w.groups.setdefault(group_of(key), []).append(value)
                elif key.startswith("prometheus_rule_group_interval_seconds"):
                    self.w.interval[group_of(key)] = value
            if n % 5:
                continue
            # per rule, every 5 s: the recording rules only (alerting rules list every alert)
            try:
                url = f"{self.stack.prometheus_url}/api/v1/rules?type=record"
                groups = http_get(url, timeout=10)["data"]["groups"]
            except (OSError, KeyError, ValueError):
                continue
            for g in groups:
                short = g["name"].rsplit("-", 1)[-1]
                for r in g["rules"]:
                    window = r["query"].split("[")[-1].split("]")[0] if "[" in r["query"] else ""
                    key = f"{short}: {r['name']}" + (f" [{window}]" if window else "")
                    self.w.rules.setdefault(key, []).append(r["evaluationTime"])

    def stop(self) -> Window:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        w = self.w
        w.seconds = time.monotonic() - self._t0
        for name, pid in self.pids.items():
            s = proc_sample(pid)
            if s and name in self._cpu0:
                w.cpu[name] = (s[0] - self._cpu0[name]) / w.seconds
                w.waited[name] = (run_queue_wait(pid) - self._wait0[name]) / w.seconds
                w.rss[name] = max(w.rss.get(name, 0), s[1])
        busy, total = machine_busy()
        ncpu = os.cpu_count() or 1
        w.machine = (busy - self._busy0[0]) / max(1, total - self._busy0[1]) * ncpu
        end = self._prom_counters()
        for key, value in end.items():
            if "rule_group_iterations_missed_total" in key or "rule_group_iterations_total" in key:
                group = group_of(key)
                delta = value - self._prom0.get(key, 0.0)
                (w.missed if "missed" in key else w.iterations)[group] = delta
        w.load = (w.load[0], os.getloadavg()[0])
        return w


def query(stack: Stack, promql: str) -> list[dict]:
    url = f"{stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        return http_get(url, timeout=20)["data"]["result"]
    except (OSError, KeyError, ValueError):
        return []


def scalar(stack: Stack, promql: str) -> float | None:
    res = query(stack, promql)
    if not res:
        return None
    v = float(res[0]["value"][1])
    return None if math.isnan(v) else v


# -- one run: ten faults at once ----------------------------------------------------------------------

@dataclass
class Fault:
    kind: str           # null, error, pii
    trigger: str        # the plan trigger it breaks
    alert: str
    endpoint: str
    specs: list[dict]
    t0: float = 0.0
    firing: float | None = None       # Prometheus' activeAt
    recorded: float | None = None     # the webhook's record of the first run
    started: float | None = None      # its first step started (action, or refusal)
    finished: float | None = None     # the run finished
    outcome: str = ""                 # the first step's outcome: ok, cooldown, ...
    runs: int = 0                     # runs for this endpoint (escalation pages not counted)
    alerts: set[str] = field(default_factory=set)

    @property
    def total(self) -> float | None:
        return None if self.finished is None else self.finished - self.t0


def plan_faults(plan: Plan, endpoints: list[str], kinds: list[str]) -> list[Fault]:
    scen = {s.name: s for s in sc.build(plan)}
    out = []
    for i, ep in enumerate(endpoints):
        kind = kinds[i % len(kinds)]
        s = scen[KINDS[kind]]
        out.append(Fault(kind, s.name, s.alert, ep, [{**f, "endpoint": ep} for f in s.faults]))
    return out


def runs_since(stack: Stack, since: float) -> list[dict]:
    """The webhook's runs created since ``since`` (GET /api/actions), oldest first.

    Asked from 127.0.0.2: the webhook caps connections per client address, and on loopback
    Alertmanager is 127.0.0.1 too; in production the two are different hosts.
    """
    conn = http.client.HTTPConnection(HOST, stack.port("webhook"), timeout=10,
                                      source_address=("127.0.0.2", 0))
    try:
        conn.request("GET", f"/api/actions?limit=10000&since={since:.3f}",
                     headers={"Authorization": f"Bearer {stack.webhook_token}"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"/api/actions: HTTP {resp.status}: {body[:200]!r}")
    except http.client.HTTPException as err:
        raise OSError(f"/api/actions: {err}") from None
    finally:
        conn.close()
    return sorted(json.loads(body)["actions"], key=lambda a: a["id"])


def run_faults(stack: Stack, faults: list[Fault], timeout: float, settle: float) -> list[dict]:
    """Inject every fault at once; wait until each has a finished run (or the timeout), then
    ``settle`` seconds more to see second runs. Returns the runs that belong to no fault."""
    since = time.time()
    by_ep = {f.endpoint: f for f in faults}
    for f in faults:
        f.t0 = time.time()
        for spec in f.specs:
            retry(lambda spec=spec: stack.inject(spec))
    deadline = time.time() + timeout
    settle_until = None
    new: list[dict] = []
    while time.time() < (settle_until or deadline):
        time.sleep(0.25)
        try:
            for a in stack.prometheus_alerts():
                lab = a["labels"]
                f = by_ep.get(lab.get("endpoint", ""))
                if f and lab.get("alertname") == f.alert and a["state"] == "firing" and f.firing is None:
                    f.firing = epoch(a["activeAt"])
            new = runs_since(stack, since)
        except OSError:
            continue  # a busy component: try again
        for f in faults:
            mine = [a for a in new if a["escalated_from"] is None and a["incident"]
                    and a["incident"]["endpoint"] == f.endpoint]
            f.runs = len(mine)
            f.alerts = {a["incident"]["alertname"] for a in mine}
            first = mine[0] if mine else None
            if first and first["finished_at"] and f.finished is None:
                f.recorded = first["created_at"]
                f.finished = first["finished_at"]
                steps = first["attempts"]
                f.started = min((s["started_at"] for s in steps if s["started_at"]), default=None)
                f.outcome = steps[0]["outcome"] if steps else first["status"]
        if settle_until is None and all(f.finished for f in faults):
            settle_until = time.time() + settle
    return [a for a in new if a["escalated_from"] is None and
            (not a["incident"] or a["incident"]["endpoint"] not in by_ep)]


def retry(call, tries: int = 5, pause: float = 1.0):
    """``call()``, again after an OSError (a component too busy to answer in time)."""
    for i in range(tries):
        try:
            return call()
        except OSError:
            if i == tries - 1:
                raise
            time.sleep(pause)


def false_rollback(plan: Plan, run: dict) -> bool:
    """A run that changes a guarded track for an endpoint that had no fault."""
    inc = run["incident"] or {}
    action = plan.actions.get(run["action"])
    return bool(inc.get("endpoint")) and inc.get("track") in plan.guarded_tracks() and (
        action is not None and action.kind != "page")


def describe_strays(plan: Plan, strays: list[dict]) -> list[str]:
    """Runs that belong to no fault, counted by alert, scope, action and status."""
    counts: dict[tuple, int] = {}
    for a in strays:
        inc = a["incident"] or {}
        scope = "per endpoint" if inc.get("endpoint") else f"track {inc.get('track') or '-'}"
        key = (inc.get("alertname", "?"), scope, a["action"], a["status"], false_rollback(plan, a))
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {alert} ({scope}): {action} {status}"
            + ("  <-- A HEALTHY ENDPOINT CHANGED" if bad else "")
            for (alert, scope, action, status, bad), n in sorted(counts.items())]


def heal(stack: Stack) -> None:
    retry(stack.clear_faults)
    disabled = retry(stack.disabled_features)
    if disabled:
        retry(lambda: stack.enable_features(disabled))


# -- statistics -----------------------------------------------------------------------------------------

def nearest_rank(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank: an observed value (with fewer than 100, p99 is the max)."""
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def mib(b: int) -> str:
    return f"{b / 2**20:.0f} MiB"


# -- one configuration ----------------------------------------------------------------------------------

@dataclass
class Config:
    name: str
    shards: int
    faults: list[Fault] = field(default_factory=list)
    strays: list[dict] = field(default_factory=list)
    window: Window | None = None
    facts: dict[str, float | None] = field(default_factory=dict)
    scrapes: list[tuple[str, float, float, float]] = field(default_factory=list)


def run_config(plan: Plan, shards: int, args, rng: random.Random) -> Config:
    n = len(plan.endpoints)
    cfg = Config(f"{n:,} endpoints x {len(plan.targets)} tracks, "
                 f"{'one exporter' if shards == 1 else f'{shards} exporter shards'}", shards)
    print(f"\n== {cfg.name}  (load {os.getloadavg()[0]:.1f})")
    workdir = None
    if args.keep:
        workdir = tempfile.mkdtemp(prefix=f"canary-guard-scale-{shards}-")
        print(f"   logs and data kept in {workdir}")
    stack = Stack(plan, workdir, log=lambda m: None, exporters=shards, sandbox_args=["--no-access-log"],
                  settle_timeout=args.settle_timeout)
    t_start = time.time()
    with stack:
        demo = stack.plan
        print(f"   up in {time.time() - t_start:.0f}s: probe {demo.probe.interval:g}s "
              f"(timeout {demo.probe.timeout:g}s, concurrency {demo.probe.concurrency}), scrape "
              f"{demo.prometheus.scrape_interval:g}s, evaluation {demo.prometheus.evaluation_interval:g}s, "
              f"group_wait {demo.alertmanager.group_wait:g}s, cooldown {demo.webhook.cooldown:g}s")
        # the ratio windows count probes from the first exporter's start
        probing = min(started_at(stack.components[e].proc.pid) for e in stack.exporter_names)
        warm = max(s.warmup for s in sc.build(demo) if s.name in KINDS.values()) + 3
        wait = probing + warm - time.time()
        if wait > 0:
            print(f"   waiting {wait:.0f}s until the error-rate window holds its min_probes")
            time.sleep(wait)
        fresh = [e.name for e in demo.endpoints]
        rng.shuffle(fresh)
        kinds = args.kinds.split(",")
        sampler = Sampler(stack).start()
        for r in range(args.runs):
            time.sleep(rng.uniform(0, demo.probe.interval))  # a random phase against the schedule
            chosen, fresh = fresh[:args.faults], fresh[args.faults:]
            faults = plan_faults(demo, chosen, kinds)
            strays = run_faults(stack, faults, args.timeout, args.settle)
            for f in faults:
                not_one = "" if f.runs == 1 else "  <-- NOT exactly one: " + ",".join(sorted(f.alerts))
                print(f"   run {r + 1} {f.kind:<5} {f.endpoint:<28} "
                      f"firing {fmt_s(f.firing and f.firing - f.t0):>7}"
                      f"  recorded {fmt_s(f.recorded and f.recorded - f.t0):>7}"
                      f"  run done {fmt_s(f.total):>7} ({f.outcome or 'no run'})  runs {f.runs}{not_one}")
            for line in describe_strays(demo, strays):
                print(f"   run {r + 1} other runs: {line}")
            cfg.faults += faults
            cfg.strays += strays
            heal(stack)
        w = cfg.window = sampler.stop()
        span = f"{max(5, int(w.seconds))}s"
        job = demo.prometheus.job
        cfg.facts = {
            "scheduled": n * len(demo.targets) / demo.probe.interval,
            "done": scalar(stack, f"sum(increase(canary_probes_total[{span}])) / {w.seconds:.1f}"),
            "busy": scalar(stack, f'sum(increase(canary_probe_skipped_total{{reason="busy"}}[{span}])) '
                                  f"/ {w.seconds:.1f}"),
            "p50": scalar(stack, "histogram_quantile(0.5, sum by (le) "
                                 f"(rate(canary_probe_duration_seconds_bucket[{span}])))"),
            "p99": scalar(stack, "histogram_quantile(0.99, sum by (le) "
                                 f"(rate(canary_probe_duration_seconds_bucket[{span}])))"),
            "series": prom_text(f"{stack.prometheus_url}/metrics").get("prometheus_tsdb_head_series"),
        }
        for res in query(stack, f'scrape_duration_seconds{{job="{job}"}}'):
            inst = res["metric"]["instance"]
            sel = f'{{job="{job}", instance="{inst}"}}'
            cfg.scrapes.append((
                inst,
                scalar(stack, f"avg_over_time(scrape_duration_seconds{sel}[{span}])") or 0.0,
                scalar(stack, f"max_over_time(scrape_duration_seconds{sel}[{span}])") or 0.0,
                scalar(stack, f"scrape_samples_scraped{sel}") or 0.0))
    return cfg


def report_config(cfg: Config, ref: dict[str, dict], plan: Plan) -> None:
    w = cfg.window
    f = cfg.facts
    print(f"\n-- {cfg.name}: {len(cfg.faults)} faults over {w.seconds:.0f}s "
          f"(load average {w.load[0]:.1f} -> {w.load[1]:.1f}; all CPUs busy {w.machine:.2f} of "
          f"{os.cpu_count()} cores)")
    print(f"   probes: {f['scheduled']:,.0f}/s scheduled, {f['done'] or 0:,.0f}/s done, "
          f"{f['busy'] or 0:,.1f}/s skipped busy; probe latency p50 {fmt_s(f['p50'])}, p99 {fmt_s(f['p99'])}")
    print(f"   {'kind':<14}{'n':>3}{'p50':>8}{'p99':>8}{'max':>8}{'quiet':>8}{'p99/quiet':>10}"
          f"{'firing':>9}{'+record':>9}{'+run':>8}   one run each")
    for kind, trig in KINDS.items():
        fs = [x for x in cfg.faults if x.kind == kind]
        if not fs:
            continue
        done = [x.total for x in fs if x.total is not None]
        one = sum(x.runs == 1 for x in fs)
        if not done:
            print(f"   {trig:<14}{len(fs):>3}  no run within the timeout   {one}/{len(fs)}")
            continue
        p99 = nearest_rank(done, 0.99)
        q = ref.get(trig, {}).get("median")
        stage = stages(fs)
        missing = len(fs) - len(done)
        print(f"   {trig:<14}{len(fs):>3}{nearest_rank(done, 0.5):>7.2f}s{p99:>7.2f}s{max(done):>7.2f}s"
              f"{fmt_s(q):>8}{(f'{p99 / q:.2f}x' if q else '-'):>10}"
              f"{fmt_s(stage['firing']):>9}{fmt_s(stage['record']):>9}{fmt_s(stage['run']):>8}"
              f"   {one}/{len(fs)}" + (f"  ({missing} without a run)" if missing else ""))
    lines = describe_strays(plan, cfg.strays)
    print("   other runs: " + ("; ".join(lines) if lines else "none"))
    print(f"   {'component':<16}{'CPU cores':>10}{'waiting':>9}{'peak RSS':>10}   "
          "(waiting: its threads runnable but without a CPU, on average)")
    for name in sorted(w.cpu, key=lambda n: -w.cpu[n]):
        print(f"   {name:<16}{w.cpu[name]:>10.2f}{w.waited.get(name, 0):>9.2f}{mib(w.rss.get(name, 0)):>10}")
    print(f"   {'rule group':<16}{'interval':>9}{'eval p50':>10}{'eval max':>10}{'missed':>8}{'of':>6}")
    for g, vals in w.groups.items():
        print(f"   {g:<16}{w.interval.get(g, 0):>8g}s{statistics.median(vals):>9.3f}s{max(vals):>9.3f}s"
              f"{w.missed.get(g, 0):>8.0f}{w.iterations.get(g, 0):>6.0f}")
    slow = sorted(w.rules.items(), key=lambda kv: -statistics.median(kv[1]))[:6]
    print("   slowest rules (median eval): " + "; ".join(
        f"{k} {statistics.median(v) * 1000:.0f}ms" for k, v in slow))
    for inst, avg, mx, samples in cfg.scrapes:
        print(f"   scrape {inst}: {avg:.3f}s average, {mx:.3f}s max, {samples:,.0f} samples "
              f"(interval {plan.demo.scrape_interval:g}s)")
    print(f"   Prometheus head series: {f['series'] or 0:,.0f}")


def stages(fs: list[Fault]) -> dict[str, float | None]:
    def med(vals):
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None
    return {
        "firing": med([x.firing - x.t0 if x.firing else None for x in fs]),
        "record": med([x.recorded - (x.firing or x.t0) if x.recorded else None for x in fs]),
        "run": med([x.finished - x.recorded if x.finished and x.recorded else None for x in fs]),
    }


def verdict(configs: list[Config], ref: dict[str, dict]) -> bool:
    print(f"\n== done when: p99 time to run at scale <= {TARGET_RATIO}x the quiet ten-endpoint median")
    ok = True
    for cfg in configs:
        for kind, trig in KINDS.items():
            fs = [x for x in cfg.faults if x.kind == kind]
            done = [x.total for x in fs if x.total is not None]
            q = ref.get(trig, {}).get("median")
            if not fs or not q:
                continue
            if len(done) < len(fs):
                ok = False
                print(f"   {cfg.name}: {trig}: {len(fs) - len(done)} of {len(fs)} faults got no run")
                continue
            p99 = nearest_rank(done, 0.99)
            met = p99 <= TARGET_RATIO * q
            ok &= met
            line = f"   {cfg.name}: {trig}: p99 {p99:.2f}s = {p99 / q:.2f}x quiet {q:.2f}s: " + (
                "met" if met else "MISSED")
            if not met:
                # which stage holds it back: the largest growth over the quiet run's stage
                st, rs = stages(fs), ref[trig]
                growth = {name: (st[name] or 0) - (rs.get(name) or 0) for name in ("firing", "record", "run")}
                worst = max(growth, key=growth.get)
                where = {"firing": "detection (probes, scrape, rule evaluation: exporter + Prometheus)",
                         "record": "Prometheus -> Alertmanager -> webhook delivery",
                         "run": "the webhook's queue and action"}[worst]
                line += ("; stage medians vs quiet: "
                         f"firing {fmt_s(st['firing'])} ({fmt_s(rs.get('firing'))}), "
                         f"+record {fmt_s(st['record'])} ({fmt_s(rs.get('record'))}), "
                         f"+run {fmt_s(st['run'])} ({fmt_s(rs.get('run'))}); held back by {where}: "
                         f"+{growth[worst]:.2f}s")
            print(line)
    return ok


def reference(args) -> dict[str, dict]:
    names = [n for n in ORDER if n in KINDS.values()]
    if args.reference_runs <= 0:
        print("quiet ten-endpoint reference: last round's medians (README), not re-measured")
        return {n: {"median": LAST_ROUND[n]} for n in names}
    print(f"== quiet reference: the shipped plan, ten endpoints, one fault at a time, "
          f"{args.reference_runs} runs per trigger (bench_time_to_rollback)  (load {os.getloadavg()[0]:.1f})")
    plan = isolated_plan(load_plan(args.plan), names)
    with Stack(plan, log=lambda m: None) as stack:
        rows = measure(stack, names, args.reference_runs, say=lambda m: print(f"   {m}"))
    out = {}
    for r in rows:
        out[r.name] = {"median": r.median, "max": r.max, "firing": r.firing, "record": r.notified,
                       "run": r.done}
        print(f"   {r.name:<14} median {r.median:.2f}s (max {r.max:.2f}s; firing {r.firing:.2f}s, "
              f"+record {r.notified:.2f}s, +run {r.done:.2f}s)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoints", type=int, default=1000, help="endpoints per track (default 1000)")
    ap.add_argument("--shards", default="1,2",
                    help="exporter configurations to measure, comma-separated shard counts (default 1,2)")
    ap.add_argument("--runs", type=int, default=3, help="rounds of faults per configuration (default 3)")
    ap.add_argument("--faults", type=int, default=10, help="faults at once per round (default 10)")
    ap.add_argument("--kinds", default="null,error,pii", help="fault kinds, assigned in turn")
    ap.add_argument("--reference-runs", type=int, default=3,
                    help="runs per trigger of the quiet ten-endpoint reference first (0: last round's)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds a round waits for every run")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds after the last run, to see extra runs")
    ap.add_argument("--settle-timeout", type=float, default=180.0,
                    help="seconds the stack may take to come up quiet")
    ap.add_argument("--seed", type=int, default=None, help="which endpoints break, repeatably")
    ap.add_argument("--plan", default=None, help="the plan to scale (default: the shipped plan)")
    ap.add_argument("--keep", action="store_true", help="keep each stack's logs and data (printed)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if missing_binaries():
        print("needs prometheus and prometheus-alertmanager: apt-get update && apt-get install -y "
              "prometheus prometheus-alertmanager", file=sys.stderr)
        return 1
    bad = [k for k in args.kinds.split(",") if k not in KINDS]
    if bad:
        print(f"--kinds: unknown {', '.join(bad)} (known: {', '.join(KINDS)})", file=sys.stderr)
        return 2
    shards = [int(s) for s in args.shards.split(",") if s.strip()]
    if args.endpoints < args.faults * args.runs:
        print(f"--endpoints {args.endpoints}: fewer than --faults x --runs ({args.faults * args.runs}); "
              "every round breaks endpoints not broken before", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    started = time.time()
    ref = reference(args)
    plan = scale_plan(load_plan(args.plan), args.endpoints)
    configs = [run_config(plan, k, args, rng) for k in shards]
    source = "this process" if args.reference_runs > 0 else "the README"
    print(f"\n== figures (quiet ten-endpoint medians from {source})")
    for cfg in configs:
        report_config(cfg, ref, plan)
    ok = verdict(configs, ref)
    print(f"\ntook {time.time() - started:.0f}s; p99 by nearest rank (with fewer than 100 faults "
          "of a kind it is the slowest); 'run done' is the first run of the fault's incident "
          "finished: its action, or its refusal by the deployment's cooldown")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"reference": ref, "configs": [{
                "name": c.name, "shards": c.shards, "facts": c.facts,
                "faults": [{k: getattr(x, k) for k in ("kind", "endpoint", "t0", "firing", "recorded",
                                                       "started", "finished", "outcome", "runs")}
                           for x in c.faults],
                "strays": c.strays, "cpu": c.window.cpu, "waited": c.window.waited, "rss": c.window.rss,
                "groups": c.window.groups, "rules": c.window.rules, "missed": c.window.missed,
                "scrapes": c.scrapes} for c in configs]}, fh, indent=1, default=list)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
