"""``canary-guard rules render|check``: Prometheus rules, PrometheusRule, Alertmanager, tests."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from canary_guard.cli import add_plan_argument, plan_from_args

if TYPE_CHECKING:
    from canary_guard.plan import Plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    render = sub.add_parser(
        "render", help="write the rule file, PrometheusRule, alertmanager.yml and promtool tests",
        description="Render canary-guard.rules.yml, canary-guard.rules.test.yml, "
        "prometheusrule.yaml and alertmanager.yml from the plan into DIR.",
    )
    add_plan_argument(render)
    render.add_argument("--out", metavar="DIR", required=True, help="output directory (created)")
    check = sub.add_parser(
        "check", help="promtool check/test rules and amtool check-config over a render",
        description="Run promtool check rules, promtool test rules and amtool check-config over "
        "DIR, or over a fresh render of the plan in a temporary directory when DIR is not given. "
        "Exit 1 if any step fails.",
    )
    add_plan_argument(check)
    check.add_argument("dir", nargs="?", default=None, metavar="DIR",
                       help="a directory written by `rules render` (default: render the plan now)")


def _warnings(plan: Plan) -> None:
    for warning in getattr(plan, "trigger_warnings", lambda: [])():
        print(f"warning: {warning}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from . import render, tools

    if args.rules_command == "render":
        plan = plan_from_args(args)
        _warnings(plan)
        for path in render.render(plan, args.out):
            print(path)
        return 0

    if args.dir is not None and args.plan is not None:
        print("rules check: give either DIR or --plan, not both", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="canary-guard-rules-") as tmp:
        directory = args.dir
        if directory is None:
            plan = plan_from_args(args)
            _warnings(plan)
            render.render(plan, tmp)
            directory = tmp
            print(f"rendered plan {plan.name} into {tmp}")
        steps = tools.check(directory)
    failed = [s for s in steps if not s.ok]
    for step in steps:
        print(f"{'ok  ' if step.ok else 'FAIL'} {step.name}")
        if not step.ok and step.output:
            print("\n".join("     " + line for line in step.output.splitlines()))
    print(f"{len(steps) - len(failed)}/{len(steps)} steps passed" + (
        "; failed: " + ", ".join(s.name for s in failed) if failed else ""))
    return 1 if failed else 0
