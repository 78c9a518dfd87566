"""``canary-guard exporter``: probe the plan's endpoints and serve Prometheus metrics."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import TYPE_CHECKING

from canary_guard.cli import add_plan_argument, plan_from_args

if TYPE_CHECKING:
    from canary_guard.plan import Plan

log = logging.getLogger("canary_guard.exporter")

DEFAULT_LISTEN = "127.0.0.1:9111"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_argument(parser)
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"address for /metrics and /healthz (default {DEFAULT_LISTEN})")
    parser.add_argument("--target", action="append", default=[], metavar="NAME=URL",
                        help="probe track NAME at URL (replaces the plan's URL for NAME, or adds "
                             "a track); repeatable")
    parser.add_argument("--interval", default=None, metavar="S",
                        help="probe interval per endpoint, e.g. 15s or 0.5 (default: plan)")
    parser.add_argument("--timeout", default=None, metavar="S",
                        help="probe timeout of the endpoints without their own (replaces "
                             "probe.timeout); may exceed the interval, the next tick is then "
                             "skipped (default: plan)")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="probe only shard K of N (0 <= K < N) of the (track, endpoint) pairs, "
                             "chosen by a stable hash: run N replicas, e.g. a StatefulSet's ordinals")


def parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    k, sep, n = value.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 0 <= int(k) < int(n):
        raise ValueError(f"--shard {value!r}: expected K/N with 0 <= K < N, e.g. 0/3")
    return int(k), int(n)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "0.0.0.0", int(port)


def resolve_targets(plan: Plan, overrides: list[str]) -> dict[str, str]:
    """Track name -> base URL: the plan's targets, with ``NAME=URL`` overrides applied."""
    from canary_guard.plan import NAME_RE

    targets = {t.name: t.url for t in plan.targets}
    for item in overrides:
        name, sep, url = item.partition("=")
        if not sep or not re.match(NAME_RE, name):
            raise ValueError(f"--target {item!r}: expected NAME=URL with NAME like 'canary'")
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"--target {item!r}: URL must start with http:// or https://")
        targets[name] = url.rstrip("/")
    return targets


def seconds(value: str) -> float:
    """A duration ("15s", "500ms") or a bare number of seconds ("0.5")."""
    from canary_guard.durations import parse_seconds_or_duration

    return parse_seconds_or_duration(value)


def run(args: argparse.Namespace) -> int:
    import asyncio

    plan = plan_from_args(args)
    try:
        host, port = parse_listen(args.listen)
        targets = resolve_targets(plan, args.target)
        interval = seconds(args.interval) if args.interval else plan.probe.interval
        timeout = seconds(args.timeout) if args.timeout else plan.probe.timeout
        # the timeout may exceed the interval: a probe still running at its next tick skips
        # that tick (canary_probe_skipped_total{reason="busy"}), so slow answers are measured
        if not (interval > 0 and timeout > 0):
            raise ValueError(f"--interval {interval}s and --timeout {timeout}s must both be > 0")
        shard = parse_shard(args.shard)
        auth_headers = plan.auth.headers()  # read once, at start
    except (ValueError, OSError) as err:
        print(f"canary-guard exporter: {err}", file=sys.stderr)
        return 2
    effective = plan.model_copy(update={"probe": plan.probe.model_copy(
        update={"interval": interval, "timeout": timeout})})
    for warning in effective.budget_warnings():
        log.warning("probe budget", extra={"problem": warning})
    if plan.auth.token_env or plan.auth.token_file:
        if auth_headers:
            log.info("auth header set", extra={"header": plan.auth.header})
        else:
            log.warning("no API token: probing without auth", extra={
                "token_env": plan.auth.token_env or "", "token_file": plan.auth.token_file or ""})

    from .app import serve

    try:
        return asyncio.run(serve(plan, targets, auth_headers, host, port, interval, timeout,
                                 shard=shard))
    except OSError as err:
        log.error("cannot start", extra={"listen": args.listen, "error": err.strerror or str(err)})
        return 1
