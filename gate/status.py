"""``canary-guard status``: a live terminal view of every endpoint of every track.

Redraws in place with plain ANSI escapes (no curses) every few seconds; ``--once`` prints a
single plain frame, for scripts and tests.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from typing import TYPE_CHECKING

from canary_guard.cli import add_plan_argument, plan_from_args
from canary_guard.durations import format_duration

from .cli import duration_arg

if TYPE_CHECKING:  # imported when a command runs
    from canary_guard.plan import Plan

    from .prom import Prometheus

HOME, CLEAR_EOL, CLEAR_BELOW, CLEAR = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[2J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
RED, YELLOW, GREEN, DIM, RESET = "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[2m", "\x1b[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_argument(parser)
    parser.add_argument("--prometheus", metavar="URL", default="http://127.0.0.1:9090",
                        help="Prometheus base URL (default http://127.0.0.1:9090)")
    parser.add_argument("--window", metavar="DURATION", type=duration_arg, default=300.0,
                        help="range for rates and latencies (default 5m)")
    parser.add_argument("--interval", metavar="DURATION", type=duration_arg, default=5.0,
                        help="refresh every (default 5s)")
    parser.add_argument("--tracks", metavar="A,B", default=None,
                        help="tracks to show (default: every target of the plan)")
    parser.add_argument("--at", metavar="TIME", default=None,
                        help="show the state at this time (RFC3339, unix seconds): a replay, implies --once")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")


def run(args: argparse.Namespace) -> int:
    from .prom import Prometheus, PrometheusError, parse_time

    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = plan_from_args(args)
    tracks = [t.strip() for t in args.tracks.split(",") if t.strip()] if args.tracks else \
        [t.name for t in plan.targets]
    try:
        at = parse_time(args.at) if args.at else None
    except ValueError as err:
        print(f"canary-guard status: {err}", file=sys.stderr)
        return 1
    prom = Prometheus(args.prometheus, timeout=min(10.0, max(2.0, args.interval)))
    try:
        if args.once or at is not None:
            try:
                when = at if at is not None else time.time()
                print(frame(plan, prom, tracks, args.window, when, color=False))
            except PrometheusError as err:
                print(f"canary-guard status: {err}", file=sys.stderr)
                return 1
            return 0
        return _live(plan, prom, tracks, args.window, args.interval)
    finally:
        prom.close()


def _live(plan: Plan, prom: Prometheus, tracks: list[str], window: float, interval: float) -> int:
    from .prom import PrometheusError

    out = sys.stdout
    color = out.isatty()
    out.write(HIDE_CURSOR + CLEAR)
    try:
        while True:
            try:
                text = frame(plan, prom, tracks, window, time.time(), color=color)
            except PrometheusError as err:
                text = f"canary-guard status: {err}\nretrying every {format_duration(interval)}..."
            lines = text.splitlines() + ["", f"refresh every {format_duration(interval)}; Ctrl-C to quit"]
            out.write(HOME + "".join(line + CLEAR_EOL + "\n" for line in lines) + CLEAR_BELOW)
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    finally:
        out.write(SHOW_CURSOR)
        out.flush()


def frame(plan: Plan, prom: Prometheus, tracks: list[str], window: float, at: float, color: bool) -> str:
    """One screen: a row per track and endpoint, with flags against the plan's SLOs."""
    from . import stats
    from .prom import fetch_window, gauges

    data = fetch_window(prom, window, at, tracks)
    streaks = gauges(prom, "canary_probe_null_streak", at, tracks)
    phase_gates = {
        (labels.get("track", ""), labels.get("phase", "")): v
        for labels, v in prom.query("track:canary_phase_gate:all_ok", at)
    }
    firing: dict[str, list[str]] = {}
    for labels, _ in prom.query('ALERTS{alertstate="firing"}', at):
        firing.setdefault(labels.get("track", ""), []).append(labels.get("alertname", "?"))
    rollout = rollout_line(prom, at)
    slo = plan.slos
    null_limit = next((t.threshold for t in plan.triggers if t.kind == "null_streak"), None)
    guarded = set(plan.guarded_tracks())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))
    lines = [f"canary-guard status  plan {plan.name}  {stamp}  window {format_duration(window)}  "
             f"SLO: error <= {slo.error_rate:.2%}, avg <= {_ms(slo.avg_latency)}, "
             f"p95 <= {_ms(slo.p95_latency)}"]
    if rollout:
        lines.append(rollout)
    for track in tracks:
        gates = [f"{ph}={'open' if v == 1 else 'closed'}"
                 for (t, ph), v in sorted(phase_gates.items()) if t == track]
        notes = "guarded" if track in guarded else "baseline" if plan.target(track) else "not in the plan"
        if gates:
            notes += f"  gates: {' '.join(gates)}"
        if firing.get(track):
            notes += "  FIRING: " + ", ".join(sorted(set(firing[track])))
        lines.append("")
        lines.append(f"{track}: {notes}")
        rows = []
        for ep in plan.endpoints:
            s = data.get((track, ep.name))
            streak = streaks.get((track, ep.name))
            if s is None or s.counted == 0:
                rows.append([track, ep.name, "-", "-", "-", "-", "-", _num(streak), "no data"])
                continue
            n = s.counted
            err = s.errors / n
            nulls = round(s.outcomes.get("null", 0.0)) / n
            avg = s.latency_sum / s.latency_count if s.latency_count else None
            p95 = stats.histogram_quantile(0.95, s.sorted_buckets())
            flags = []
            if s.successes == 0:
                flags.append("DOWN")
            if err > slo.error_rate:
                flags.append("ERR")
            if (avg is not None and avg > slo.avg_latency) or (p95 is not None and p95 > slo.p95_latency):
                flags.append("SLOW")
            if null_limit is not None and streak is not None and streak > null_limit:
                flags.append("NULL")
            rows.append([track, ep.name, f"{n / window:.2f}", f"{err:.2%}", f"{nulls:.2%}", _ms(avg),
                         _ms(p95), _num(streak), " ".join(flags) or "ok"])
        lines.append(_table(rows, color))
    return "\n".join(lines)


def rollout_line(prom: Prometheus, at: float) -> str | None:
    """``canary-guard rollout``'s phase, weight, status and last decision, when Prometheus
    scrapes its control port; None otherwise."""
    from canary_guard import contract as c

    values: dict[str, tuple[dict, float]] = {}
    names = "|".join((c.ROLLOUT_PHASE, c.ROLLOUT_PHASES, c.ROLLOUT_WEIGHT, c.ROLLOUT_DECISION_TIME))
    for labels, v in prom.query(f'{{__name__=~"{names}"}}', at):
        values[labels.get("__name__", "")] = (labels, v)
    if c.ROLLOUT_PHASE not in values:
        return None
    # a comparison may drop the metric name: tell the two apart by their label
    flags: dict[str, str] = {}
    for labels, _ in prom.query(f'{{__name__=~"{c.ROLLOUT_STATUS}|{c.ROLLOUT_DECISION}"}} == 1', at):
        flags.update({k: labels[k] for k in ("status", "decision") if k in labels})
    phase_labels, number = values[c.ROLLOUT_PHASE]
    total = values.get(c.ROLLOUT_PHASES, ({}, 0))[1]
    weight = values.get(c.ROLLOUT_WEIGHT, ({}, math.nan))[1]
    status = flags.get("status", "?")
    line = (f"rollout: phase {number:.0f}/{total:.0f} {phase_labels.get('phase', '?')}, canary weight "
            f"{'-' if math.isnan(weight) else f'{weight:.0%}'}, {status.upper()}")
    decision = flags.get("decision")
    when = values.get(c.ROLLOUT_DECISION_TIME, ({}, 0.0))[1]
    if decision and when:
        line += f"; last gate decision {decision} {format_duration(max(0, round(at - when)))} ago"
    return line


HEADERS = ["TRACK", "ENDPOINT", "PROBES/S", "ERRORS", "NULLS", "AVG", "P95", "NULL STREAK", "STATUS"]


def _table(rows: list[list[str]], color: bool) -> str:
    widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip()]
    for r in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        if color:
            status = r[-1]
            tint = GREEN if status == "ok" else DIM if status == "no data" else \
                YELLOW if status in ("SLOW", "NULL") else RED
            line = line[: len(line) - len(status)] + tint + status + RESET
        out.append(line)
    return "\n".join(out)


def _ms(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v * 1000:.0f}ms" if v < 10 else f"{v:.1f}s"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"
