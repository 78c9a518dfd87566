"""``canary-guard plan check|learn``: validate a plan, check it against a running baseline,
or learn it from one.

- ``plan check [FILE]``: every problem named by its field path, or a summary with warnings;
  ``--against URL`` also runs the preflight (every content check of the plan against the
  baseline) and exits 1 when a check already fails there.
- ``plan learn [FILE] --target URL``: probe a running baseline for a bounded time, print what
  it answers and propose required_fields and per-endpoint timeouts; ``--write`` applies them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from typing import TYPE_CHECKING

from .durations import format_duration, parse_duration
from .plan import NAME_RE, Plan, PlanError, default_plan_path, load_plan, min_requests

if TYPE_CHECKING:  # sampling imports aiohttp: only when a command probes
    from .sampling import Sample

DEFAULT_LEARN_COUNT = 30
DEFAULT_LEARN_DURATION = 300.0
DEFAULT_PREFLIGHT_PROBES = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="plan_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a plan (default: the shipped plan)")
    check.add_argument("file", nargs="?", default=None, help="plan file")
    check.add_argument("--against", action="append", default=[], metavar="URL|NAME=URL",
                       help="preflight: run every content check of the plan against this running "
                            "baseline (repeatable); exit 1 when one already fails there")
    check.add_argument("--probes", type=int, default=DEFAULT_PREFLIGHT_PROBES, metavar="N",
                       help=f"probes per endpoint for --against (default {DEFAULT_PREFLIGHT_PROBES})")
    learn = sub.add_parser(
        "learn", help="probe a running baseline and propose required_fields and timeouts",
        description="Probe a running baseline for a bounded time, within the plan's rate limits; "
                    "print per endpoint the status codes, latency p50/p95/p99/max and the fields "
                    "present and non-null in every answer; propose required_fields and "
                    "per-endpoint timeouts above the observed tail (--write applies them).")
    learn.add_argument("file", nargs="?", default=None, help="plan file (default: the shipped plan)")
    learn.add_argument("--target", action="append", default=[], metavar="URL|NAME=URL",
                       help="what to probe (repeatable, one per track); default: the plan's "
                            "baseline track at its URL")
    learn.add_argument("--count", type=int, default=DEFAULT_LEARN_COUNT, metavar="N",
                       help=f"probes per endpoint and target (default {DEFAULT_LEARN_COUNT})")
    learn.add_argument("--duration", default=format_duration(DEFAULT_LEARN_DURATION), metavar="D",
                       help="stop after this long even if --count is not reached (default "
                            f"{format_duration(DEFAULT_LEARN_DURATION)})")
    learn.add_argument("--interval", default=None, metavar="D",
                       help="time between two probes of one endpoint (default: half the plan's "
                            "rate_limits.per_endpoint_per_minute, or none)")
    learn.add_argument("--write", action="store_true",
                       help="apply the proposals to FILE, keeping its comments and layout")
    learn.add_argument("--out", metavar="FILE", default=None,
                       help="with --write: write the learned plan here instead of over FILE")


def run(args: argparse.Namespace) -> int:
    try:
        plan = load_plan(args.file)
    except PlanError as err:
        print(f"{err.source}: {len(err.problems)} problem(s)", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if args.plan_command == "learn":
        return run_learn(plan, args)
    print(summary(plan, args.file or "shipped default"))
    if args.against:
        return run_preflight(plan, args)
    return 0


def _fail(message: str) -> int:
    print(f"canary-guard plan: {message}", file=sys.stderr)
    return 2


def _seconds(value: str, option: str) -> float:
    """A duration (``90s``, ``500ms``) or a bare number of seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parse_duration(value)
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from None


def resolve_targets(plan: Plan, items: list[str], option: str) -> list[tuple[str, str]]:
    """``URL`` or ``NAME=URL`` items as (track, url); none: the plan's baseline track."""
    out = []
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or "://" in name:
            name, url = "baseline", item
        elif not re.match(NAME_RE, name):
            raise ValueError(f"{option} {item!r}: expected URL or NAME=URL with NAME like 'stable'")
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{option} {item!r}: the URL must start with http:// or https://")
        out.append((name, url.rstrip("/")))
    if not out:
        base = plan.baseline_track()
        target = plan.target(base) if base else None
        if target is None:
            raise ValueError(f"{option}: required, the plan has no baseline track (a target that "
                             "is not guarded, or analysis.baseline)")
        out.append((target.name, target.url))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{option}: each target needs its own NAME (got {', '.join(names)})")
    return out


def _sample(plan: Plan, targets: list[tuple[str, str]], count: int, duration: float,
            interval: float | None) -> tuple[dict[str, dict[str, Sample]], float]:
    from .sampling import Pacing, sample_target

    pacing = Pacing.from_plan(plan, interval)
    headers = plan.auth.headers()

    async def all_targets() -> list[dict[str, Sample]]:
        return await asyncio.gather(*(
            sample_target(plan, url, track=name, count=count, duration=duration, pacing=pacing,
                          auth_headers=headers)
            for name, url in targets))

    started = time.monotonic()
    results = asyncio.run(all_targets())
    return {name: res for (name, _), res in zip(targets, results, strict=True)}, time.monotonic() - started


def run_preflight(plan: Plan, args: argparse.Namespace) -> int:
    from . import preflight
    from .sampling import SamplingError

    if args.probes < 1:
        return _fail("--probes: must be at least 1")
    try:
        targets = resolve_targets(plan, args.against, "--against")
        samples, took = _sample(plan, targets, args.probes, 60.0 + args.probes * 10, None)
    except (ValueError, SamplingError, OSError) as err:
        return _fail(str(err))
    failing = False
    for name, url in targets:
        findings = preflight.check(plan, samples[name])
        print(f"preflight against {name} ({url}): {args.probes} probe(s) of each of "
              f"{len(samples[name])} endpoints in {took:.1f}s")
        for f in findings:
            print(f"  {f.line()}")
        if preflight.failed(findings):
            failing = True
            print(f"  {sum(f.severity == preflight.FAIL for f in findings)} check(s) of the plan fail "
                  f"on {name}: a check that fails on the baseline is a bug in the plan, not in the "
                  "canary; fix the plan (canary-guard plan learn proposes the fixes)")
        elif not findings:
            print(f"  OK: every check of the plan holds on {name}")
    return 1 if failing else 0


def run_learn(plan: Plan, args: argparse.Namespace) -> int:
    from . import learn
    from .sampling import SamplingError

    if args.count < 1:
        return _fail("--count: must be at least 1")
    if args.write and args.file is None and args.out is None:
        return _fail("--write: name the plan FILE to update (or --out FILE): the shipped plan is "
                     "part of the installed package")
    try:
        duration = _seconds(args.duration, "--duration")
        interval = _seconds(args.interval, "--interval") if args.interval else None
        if duration <= 0:
            raise ValueError(f"--duration {args.duration!r}: must be more than 0s")
        targets = resolve_targets(plan, args.target, "--target")
        samples, took = _sample(plan, targets, args.count, duration, interval)
    except (ValueError, SamplingError, OSError) as err:
        return _fail(str(err))
    for name, url in targets:
        print(learn.table(plan, name, url, samples[name], took))
        print()
    proposals = learn.propose(plan, samples)
    lines = learn.describe(plan, proposals)
    if not any(p.changes for p in proposals):
        print("the plan already fits this baseline: no change proposed")
    else:
        print("proposed:")
        for line in lines:
            print(f"  {line}")
    if not args.write:
        if any(p.changes for p in proposals):
            print("run again with --write to apply (comments and layout are kept)")
        return 0
    try:
        path = learn.write(args.file or default_plan_path(), plan, proposals, out=args.out)
    except (PlanError, ValueError, OSError) as err:
        print(f"canary-guard plan learn: not written: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}: required_fields, timeouts and the learned latency of each endpoint")
    return 0


def summary(plan: Plan, source: str) -> str:
    p = plan.probe
    lines = [
        f"plan {plan.name} for {plan.service}: OK ({source})",
        "targets:   " + ", ".join(
            f"{t.name}={t.url}{' (guarded)' if t.guarded else ''}" for t in plan.targets
        ),
        f"endpoints: {len(plan.endpoints)} ("
        + ", ".join(e.name for e in plan.endpoints[:10])
        + (", ..." if len(plan.endpoints) > 10 else "") + ")",
        f"probe:     every {format_duration(p.interval)}, timeout {format_duration(p.timeout)}"
        + "".join(f" ({e.name} {format_duration(e.timeout)})" for e in plan.endpoints if e.timeout)
        + ", "
        f"body <= {p.max_body_bytes} bytes, concurrency {p.concurrency}; "
        f"{plan.probe_rate_per_hour():.0f} requests/hour per target",
        "triggers:",
    ]
    for t in plan.triggers:
        window = format_duration(plan.trigger_window(t))
        extra = ""
        if t.source == "traffic":
            extra = f" min_requests={min_requests(plan, t)} source=traffic"
        elif t.kind in ("error_rate", "availability"):
            extra = f" min_probes={plan.min_probes(t)}"
        thr = "" if t.threshold is None else f" threshold={t.threshold:g}"
        lines.append(
            f"  {t.alert:<26} {t.kind:<15}{thr} window={window} for={format_duration(t.for_)}"
            f"{extra} -> {t.action} ({t.severity})"
        )
    if plan.traffic:
        tr = plan.traffic
        fails = "|".join(tr.failure)
        lines.append(
            f"traffic:   {tr.requests}{{{tr.status_label}=~\"{fails}\"}} per {tr.endpoint_label} "
            f"and {tr.track_label} (from pod label {tr.pod_label})"
            + (f", job {tr.job}" if tr.job else "")
            + (f", latency {tr.duration}" if tr.duration else "")
            + f", window {format_duration(tr.window)}")
    lines.append("actions:   " + ", ".join(f"{n} ({a.kind})" for n, a in plan.actions.items()))
    lines.append("phases:    " + " -> ".join(
        f"{ph.traffic_percent:g}%" + (f"/{format_duration(ph.duration)}" if ph.duration else "")
        for ph in plan.phases
    ))
    if plan.rollout:
        r = plan.rollout
        lines.append(f"rollout:   weight by {r.weight.kind}, rollback by {r.rollback or '(weight 0 only)'}, "
                     f"approval before {', '.join(p.name for p in plan.phases if p.approval) or 'no phase'}")
    for warning in plan.budget_warnings():
        lines.append(f"warning:   {warning}")
    for warning in plan.trigger_warnings():
        lines.append(f"warning:   {warning}")
    for warning in plan.timeout_warnings():
        lines.append(f"warning:   {warning}")
    return "\n".join(lines)
