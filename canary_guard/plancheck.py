"""``canary-guard plan check [FILE]``: validate a plan, list every problem, or summarise it."""

from __future__ import annotations

import argparse
import sys

from .durations import format_duration
from .plan import Plan, PlanError, load_plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="plan_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a plan (default: the shipped plan)")
    check.add_argument("file", nargs="?", default=None, help="plan file")


def run(args: argparse.Namespace) -> int:
    try:
        plan = load_plan(args.file)
    except PlanError as err:
        print(f"{err.source}: {len(err.problems)} problem(s)", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(summary(plan, args.file or "(shipped default)"))
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
        f"probe:     every {format_duration(p.interval)}, timeout {format_duration(p.timeout)}, "
        f"body <= {p.max_body_bytes} bytes, concurrency {p.concurrency}; "
        f"{plan.probe_rate_per_hour():.0f} requests/hour per target",
        "triggers:",
    ]
    for t in plan.triggers:
        window = format_duration(plan.trigger_window(t))
        extra = f" min_probes={plan.min_probes(t)}" if t.kind in ("error_rate", "availability") else ""
        thr = "" if t.threshold is None else f" threshold={t.threshold:g}"
        lines.append(
            f"  {t.alert:<26} {t.kind:<15}{thr} window={window} for={format_duration(t.for_)}"
            f"{extra} -> {t.action} ({t.severity})"
        )
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
    return "\n".join(lines)
