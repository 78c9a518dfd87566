"""``canary-guard demo``: the whole loop on loopback, broken on purpose, one trigger at a time."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from canary_guard.cli import add_plan_argument, plan_from_args

if TYPE_CHECKING:  # imported when the demo runs
    from .stack import Stack
    from .timeline import Result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_argument(parser)
    parser.add_argument("--scenario", metavar="NAME",
                        help="run one trigger's scenario (a trigger name of the plan, e.g. null_streak)")
    parser.add_argument("--all", action="store_true",
                        help="also run the scenarios that wait out a long `for` (latency_sustained: 5m)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the stack up after the scenarios, until Ctrl-C")
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep the plan, rules, data and logs in DIR (default: a temporary "
                             "directory, removed at the end)")


def run(args: argparse.Namespace) -> int:
    import time

    from canary_guard.durations import format_duration

    from . import scenarios as sc
    from . import timeline
    from .stack import INSTALL_HINT, Stack, StackError, install_signal_handlers, missing_binaries

    plan = plan_from_args(args)
    demo_plan = plan.with_demo_settings()
    try:
        chosen, notes = sc.select(demo_plan, args.scenario, include_slow=args.all)
    except ValueError as err:
        print(f"canary-guard demo: {err}", file=sys.stderr)
        return 2
    if args.list:
        for s in sc.build(demo_plan):
            why = f"  (cannot run: {s.infeasible})" if s.infeasible else ""
            print(f"{s.name:<18} {s.alert:<26} -> {s.action:<20} {s.describe}{why}")
        return 0
    missing = missing_binaries()
    if missing:
        print(f"canary-guard demo: {', '.join(missing)} not found. The demo runs a real Prometheus "
              f"and Alertmanager from the Debian packages; as root:\n  {INSTALL_HINT}", file=sys.stderr)
        return 1
    install_signal_handlers()

    d = plan.demo
    print(f"canary-guard demo: plan {plan.name}, {len(plan.endpoints)} endpoints, "
          f"{len(chosen)} scenario(s)")
    print(f"fast demo settings: probe every {format_duration(d.probe_interval)}, scrape and evaluate "
          f"every {format_duration(d.scrape_interval)}/{format_duration(d.evaluation_interval)}, "
          f"group_wait {format_duration(d.group_wait)}, webhook cooldown {format_duration(d.cooldown)} "
          f"(production: {format_duration(plan.probe.interval)}, "
          f"{format_duration(plan.prometheus.scrape_interval)}/"
          f"{format_duration(plan.prometheus.evaluation_interval)}, "
          f"{format_duration(plan.alertmanager.group_wait)}, {format_duration(plan.webhook.cooldown)})")
    for note in notes:
        print(f"note: {note}")

    stack = Stack(plan, args.workdir, log=lambda m: print(f"  {m}"))
    results: list[timeline.Result] = []
    try:
        try:
            stack.start()
        except StackError as err:
            print(f"canary-guard demo: {err}", file=sys.stderr)
            print(f"logs: {stack.logs}", file=sys.stderr)
            stack.keep_workdir = True
            return 1
        print(f"kubectl is a recording stand-in ({stack.kubectl}): it changes nothing and records "
              f"every call in {stack.record_file}")
        probing_since = time.time()
        for s in chosen:
            print()
            print(f"== {s.name}: {s.alert} -> {s.action}")
            if s.note:
                print(f"  ({s.note})")
            timeline.wait_warm(stack, s, probing_since)
            res = timeline.run(stack, s)
            results.append(res)
            if res.disabled or s.stop_exporter:
                probing_since = time.time()  # disabled probes and a restart leave a gap to fill
            for p in res.problems:
                print(f"  PROBLEM: {p}")
        print()
        print_table(results)
        print_where(stack)
        if args.keep_running:
            print("\nthe stack keeps running; Ctrl-C stops every process")
            while True:
                time.sleep(3600)
        kept = (f"the files stay in {stack.dir}" if stack.keep_workdir
                else "its temporary files go too; --workdir DIR keeps them")
        print(f"\nstopping every process now ({kept}); run with --keep-running to explore the UIs above")
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process")
        return 130
    finally:
        stack.stop()
    return 0 if results and all(r.ok for r in results) else 1


def print_table(results: list[Result]) -> None:
    rows = [("trigger", "alert", "action", "fault -> action", "ok")]
    for r in results:
        secs = f"{r.seconds_to_action:.1f}s" if r.seconds_to_action is not None else "-"
        alert = r.alert
        if r.action_alert and r.action_alert != r.alert:
            alert += f" (ran by {r.action_alert})"
        rows.append((r.scenario, alert, r.action, secs, "yes" if r.ok else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_where(stack: Stack) -> None:
    print("\nwhere to look:")
    print(f"  Prometheus    {stack.prometheus_url}/alerts   (rules: {stack.prometheus_url}/rules)")
    print(f"  Alertmanager  {stack.alertmanager_url}/#/alerts")
    user, password = stack.operator
    print(f"  webhook       {stack.webhook_url}/   (sign in as {user} / {password}; audit trail: "
          f"{stack.webhook_url}/api/actions)")
    notify = stack.plan.notify if stack.plan else None
    if stack.slack and stack.smtp and notify and notify.slack and notify.email:
        print(f"  people        {len(stack.slack.messages)} Slack message(s) to "
              f"{notify.slack.channel}, {len(stack.smtp.messages)} e-mail(s) to "
              f"{', '.join(notify.email.to)} (local stand-ins: {stack.slack.url}, "
              f"smtp://{stack.smtp.smarthost})")
    print(f"  exporter      {stack.exporter_url}/metrics")
    print(f"  canary        {stack.sandbox_url()}/elite/system-status")
    print(f"  files         {stack.dir} (plan.yaml, rules/, logs/)")
