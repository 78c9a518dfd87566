"""``canary-guard sandbox``: run the simulated service with fault injection."""

from __future__ import annotations

import argparse
import os
import sys

from canary_guard.cli import add_plan_argument, plan_from_args

DEFAULT_LISTEN = "127.0.0.1:8000"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (every interface)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def parse_fault(value: str) -> dict:
    import json

    try:
        spec = json.loads(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(spec, dict):
        raise argparse.ArgumentTypeError('expected a JSON object like {"endpoint": "*", "mode": "error"}')
    return spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_argument(parser)
    parser.add_argument(
        "--listen", metavar="HOST:PORT", type=parse_listen, default=parse_listen(DEFAULT_LISTEN),
        help=f"address to serve on (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--seed", type=int, default=None,
        help="seed the random draw of faults with rate < 1 (repeatable tests)",
    )
    parser.add_argument(
        "--latency", choices=("reference", "none"), default="reference",
        help="latency profile of healthy answers: 'reference' (default) answers each endpoint "
             "as fast as the real service (most 5-25 ms, homomorphic ~0.45 s with a tail to "
             "1.4 s); 'none' answers at once",
    )
    parser.add_argument(
        "--slowdown", type=float, default=1.0, metavar="F",
        help="stretch every service time by F >= 1, as CPU contention would (default 1)",
    )
    parser.add_argument(
        "--cores", type=int, default=0, metavar="N",
        help="work on at most N answers at once, the others queue (default 0: no limit)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="MS",
        help="extra think time of every endpoint answer, jittered +-50%% (default 0)",
    )
    parser.add_argument(
        "--fault", metavar="JSON", action="append", type=parse_fault, default=[],
        help='a fault active from the start, as POSTed to /-/faults, e.g. '
             '\'{"endpoint": "edge_ai", "mode": "error", "rate": 0.1}\'; repeatable',
    )
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false",
        help="do not log one line per request",
    )
    parser.add_argument(
        "--api-key-env", metavar="NAME", default=None,
        help="env var holding the API key to require (default: the plan's auth.token_env); "
             "an empty or unset variable means no auth",
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from aiohttp import web

    from .app import create_app

    plan = plan_from_args(args)
    env = args.api_key_env or plan.auth.token_env
    api_key = (os.environ.get(env, "") if env else "").strip() or None
    host, port = args.listen
    from .faults import FaultError

    log = logging.getLogger("sandbox")
    if args.latency_ms < 0:
        print("--latency-ms: must be >= 0", file=sys.stderr)
        return 2
    if not args.slowdown >= 1:
        print("--slowdown: must be >= 1 (1: an idle machine; 1.5: answers take 50% longer)",
              file=sys.stderr)
        return 2
    if args.cores < 0:
        print("--cores: must be >= 0 (0: no limit)", file=sys.stderr)
        return 2
    try:
        app = create_app(plan, api_key=api_key, seed=args.seed, latency_ms=args.latency_ms,
                         faults=args.fault, access_log=args.access_log, latency_profile=args.latency,
                         slowdown=args.slowdown, cores=args.cores)
    except FaultError as err:
        print(f"--fault: {err}", file=sys.stderr)
        return 2

    log.info(
        "sandbox listening",
        extra={
            "listen": f"{host}:{port}", "plan": plan.name, "endpoints": len(plan.endpoints),
            "auth": f"required ({env})" if api_key else "off", "seed": args.seed,
            "faults": len(args.fault), "latency": args.latency, "slowdown": args.slowdown,
            "cores": args.cores,
        },
    )
    # run_app turns SIGTERM/SIGINT into a graceful stop; on_shutdown releases hung requests.
    web.run_app(app, host=host, port=port, print=None, access_log=None, shutdown_timeout=2.0,
                handle_signals=True)
    log.info("sandbox stopped")
    return 0
