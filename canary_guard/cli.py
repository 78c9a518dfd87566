"""The one command line: ``canary-guard <component> ...``.

Each component owns a small ``cli`` module with ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports happen inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import __version__
from .logs import setup_logging

if TYPE_CHECKING:  # imported when a command runs (a bad plan module must not break --help)
    from .plan import Plan

# subcommand -> (module with add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("canary_guard.plancheck", "validate a plan file and summarise it"),
    "sandbox": ("canary_guard.sandbox.cli", "run the simulated service with fault injection"),
    "traffic": ("canary_guard.sandbox.traffic",
                "send simulated user traffic, split between the tracks (bounded)"),
    "exporter": ("canary_guard.exporter.cli", "probe the endpoints and expose Prometheus metrics"),
    "rules": ("canary_guard.rules.cli", "render and check Prometheus rules and Alertmanager routing"),
    "webhook": ("canary_guard.webhook.cli", "receive Alertmanager notifications and run rollbacks"),
    "demo": ("canary_guard.demo.cli", "run the whole loop on loopback and break it on purpose"),
    "dashboard": ("canary_guard.dashboard.cli", "render the Grafana dashboard from the plan"),
    "gate": ("canary_guard.gate.cli", "decide promote, hold or roll back for a phase"),
    "status": ("canary_guard.gate.status", "live terminal view of every endpoint"),
    "rollout": ("canary_guard.rollout.cli",
                "walk the plan's phases: set each weight, gate, promote or roll back"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canary-guard",
        description="Guard a canary rollout with Prometheus: probe, alert, roll back.",
    )
    parser.add_argument("--version", action="version", version=f"canary-guard {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except Exception as err:  # any failure: the command stays listed and says why when used
            problem = f"{type(err).__name__}: {err}"
            p = sub.add_parser(name, help=f"{help_text} [unavailable: {problem}]".replace("%", "%%"),
                               description=help_text, add_help=False)
            # whatever follows is the broken component's own arguments: main() accepts them
            p.set_defaults(_run=_unavailable(name, module, problem), _any_arguments=True)
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _unavailable(name: str, module: str, problem: str) -> Callable[[argparse.Namespace], int]:
    """A command whose module cannot be imported: it stays listed and says why when run."""

    def run(args: argparse.Namespace) -> int:
        print(f"canary-guard {name}: unavailable: importing {module} failed: {problem}\n"
              "Reinstall with its dependencies (`make setup`, or `pip install -e .` in a checkout) "
              "and run it again.", file=sys.stderr)
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(args.log_level)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


def add_plan_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plan", metavar="FILE", default=None,
        help="plan file (default: the shipped RecoveryOS plan)",
    )


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Load ``args.plan``; on a bad plan print every problem and exit 1."""
    from .plan import PlanError, load_plan

    try:
        return load_plan(args.plan)
    except PlanError as err:
        print(err, file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    sys.exit(main())
