"""``canary-guard gate``: promote, hold or roll back a phase, with the evidence.

Exit codes for pipelines: 0 promote, 2 hold, 3 rollback, 1 usage or connection errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from canary_guard.cli import add_plan_argument, plan_from_args
from canary_guard.durations import format_duration, parse_seconds_or_duration

if TYPE_CHECKING:  # imported when a command runs
    from canary_guard.plan import Plan

    from .evaluate import Report
    from .prom import Prometheus


def duration_arg(text: str) -> float:
    """A Prometheus duration ("5m", "200ms") or bare seconds ("0.5") for argparse."""
    try:
        return parse_seconds_or_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", nargs="?", choices=["serve"],
                        help="serve: answer over HTTP (GET /gate?phase=N, Flagger webhooks, Argo Rollouts' "
                             "web metric provider); see docs/rollout.md")
    add_plan_argument(parser)
    parser.add_argument("--prometheus", metavar="URL", required=True, help="Prometheus base URL")
    parser.add_argument("--phase", metavar="N|NAME", default=None,
                        help="phase number (1-based) or name (required unless serving)")
    parser.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:9114",
                        help="serve: address to listen on (default 127.0.0.1:9114)")
    parser.add_argument("--window", metavar="DURATION", type=duration_arg, default=None,
                        help="range to judge (default: the phase's criteria window)")
    parser.add_argument("--at", metavar="TIME", default="now",
                        help="evaluate at this time: RFC3339, unix seconds or now-DURATION (default now)")
    parser.add_argument("--since", metavar="TIME", default=None,
                        help="when this phase started (default: judged from the canary's first sample, "
                             "against the durations of phases 1..N)")
    parser.add_argument("--track", metavar="NAME", default=None,
                        help="canary track (default: the plan's first guarded target)")
    parser.add_argument("--baseline", metavar="NAME", default=None,
                        help="track to compare with, or 'none' (default: analysis.baseline, else the "
                             "first target that is not guarded)")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds (default 10)")


def pick_tracks(plan: Plan, track: str | None, baseline: str | None) -> tuple[str, str | None]:
    names = [t.name for t in plan.targets]
    guarded = plan.guarded_tracks()
    track = track or (guarded[0] if guarded else None)
    if not track:
        raise ValueError("the plan has no guarded target: pass --track")
    if baseline is None:
        baseline = plan.analysis.baseline or next((t.name for t in plan.targets if not t.guarded), None)
    elif baseline.lower() == "none":
        baseline = None
    for name, flag in ((track, "--track"), (baseline, "--baseline")):
        if name is not None and name not in names:
            # tracks are label values: allow names outside the plan, but say so on stderr
            print(f"note: {flag} {name!r} is not a target of the plan", file=sys.stderr)
    if baseline == track:
        raise ValueError("--baseline must differ from --track")
    return track, baseline


def judge(plan: Plan, prom: Prometheus, index: int, at: float, since: float | None, track: str,
          baseline: str | None, window: float | None = None) -> Report:
    """The decision for one phase at ``at``: the Report that ``gate`` prints and ``gate serve``
    answers. Raises PrometheusError when Prometheus cannot be asked."""
    from .evaluate import decide, required_elapsed
    from .prom import fetch_window, first_sample
    from .sources import label, merge
    from .traffic import fetch_traffic_window

    window = window or plan.phases[index].criteria.window
    tracks = [t for t in (track, baseline) if t]
    data = fetch_window(prom, window, at, tracks)
    started = since
    need = required_elapsed(plan, index, since is not None)
    if started is None and need is not None:
        started = first_sample(prom, track, need + 3600, at)
    flag = since is not None
    report = label(decide(plan, index, track, baseline, window, at, data, started, flag), "probe")
    if plan.traffic is None:
        return report
    # the service's own requests, where the plan names them: far more evidence than the probes
    users = fetch_traffic_window(prom, plan, window, at, tracks)
    if not any(s.counted for (t, _), s in users.items() if t == track):
        report.sources = {"probe": {"decision": report.decision, "reasons": report.reasons},
                          "traffic": {"decision": None, "reasons": [f"no requests of {track} in the window"]}}
        return report
    traffic = label(decide(plan, index, track, baseline, window, at, users, started, flag), "traffic")
    return merge(report, traffic)


def run(args: argparse.Namespace) -> int:
    from .evaluate import phase_index
    from .prom import Prometheus, PrometheusError, parse_time

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per query is noise here
    if args.mode == "serve":
        from .serve import serve

        return serve(args)
    plan = plan_from_args(args)
    try:
        if args.phase is None:
            raise ValueError("--phase is required (a phase number or name)")
        index = phase_index(plan, args.phase)
        at = parse_time(args.at)
        since = parse_time(args.since) if args.since else None
        track, baseline = pick_tracks(plan, args.track, args.baseline)
    except ValueError as err:
        print(f"canary-guard gate: {err}", file=sys.stderr)
        return 1
    prom = Prometheus(args.prometheus, timeout=args.timeout)
    try:
        report = judge(plan, prom, index, at, since, track, baseline, args.window)
    except PrometheusError as err:
        print(f"canary-guard gate: {err}", file=sys.stderr)
        return 1
    finally:
        prom.close()
    if args.json:
        print(json.dumps(finite(report.to_dict()), indent=2, allow_nan=False))
    else:
        print(render(report))
    return report.exit_code


def finite(o: Any) -> Any:
    """JSON has no Infinity/NaN: such values become null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [finite(v) for v in o]
    return o


# --- the table for people ------------------------------------------------------------------

_MARK = {"pass": "ok", "fail": "BREACH", "insufficient": "not shown"}


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "ratio":
        return f"{v * 100:.4g}%" if v < 0.99 else f"{v * 100:.4f}%"
    if unit == "seconds":
        return f"{v * 1000:.0f}ms" if v < 10 else f"{v:.1f}s"
    return f"{v:g}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def render(report: Report) -> str:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.at))
    out = [
        f"{report.decision.upper()}  phase {report.phase} of plan {report.plan}, track {report.track}"
        + (f" vs {report.baseline}" if report.baseline else ""),
        f"window {report.window} ending {at}; evidence: "
        + {"probe": "the probes", "traffic": "the service's requests",
           "probe+traffic": "the probes and the service's requests"}.get(report.source, report.source),
        "",
    ]
    rows = []
    for c in report.criteria:
        mark = "BREACH (shared)" if c.shared else _MARK[c.verdict]
        rows.append([c.name, fmt_value(c.value, c.unit), f"{c.op} {fmt_value(c.threshold, c.unit)}",
                     str(c.probes), c.source, mark, c.detail])
    t = report.timing
    if t["required"] is not None:
        elapsed = format_duration(round(t["elapsed"])) if t["elapsed"] is not None else "-"
        rows.append(["phase_duration", elapsed, f">= {format_duration(t['required'])}", "", "",
                     _MARK[t["verdict"]], "since the first canary sample" if t["started"] else "no samples"])
    out.append(table(["CRITERION", "VALUE", "THRESHOLD", "SAMPLES", "SOURCE", "VERDICT", "EVIDENCE"], rows))
    if report.comparison:
        out += ["", f"canary vs {report.baseline} (per endpoint, Holm-corrected)"]
        rows = []
        for r in report.comparison:
            lat, err = r.latency, r.errors
            rows.append([
                r.endpoint, f"{r.canary_probes}/{r.baseline_probes}",
                _pct(lat.get("median_change")) if lat else "-",
                _delta(lat) if lat else "-",
                f"{lat['p_holm']:.2g}" if lat else "-",
                f"{err['canary_ratio']:.2%} vs {err['baseline_ratio']:.2%}" if err else "-",
                f"{err['p_holm']:.2g}" if err else "-",
                r.verdict.upper() if r.verdict == "regression" else r.verdict, r.source,
            ])
        out.append(table(["ENDPOINT", "SAMPLES", "MEDIAN", "CLIFF'S DELTA [CI]", "P(LAT)", "FAILURES",
                          "P(ERR)", "VERDICT", "SOURCE"], rows))
    out += ["", "reasons:"] + [f"  - {r}" for r in report.reasons]
    return "\n".join(out)


def _delta(lat: dict) -> str:
    lo, hi = lat["cliffs_delta_ci"]
    return f"{lat['cliffs_delta']:+.2f} [{lo:+.2f},{hi:+.2f}]"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:+.0%}"
