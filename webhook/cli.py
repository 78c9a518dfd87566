"""``canary-guard webhook``: receive Alertmanager notifications and run the plan's actions."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from canary_guard.cli import add_plan_argument, plan_from_args

from .config import BODY_TIMEOUT, CONNECTION_LIMIT, HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_PER_CLIENT

log = logging.getLogger("webhook")

DEFAULT_DB = "./canary-guard-webhook.db"
# The database from the environment: a PostgreSQL URL with its password comes from a Secret,
# never from the command line (which every user of the machine can read).
DB_ENV = "CANARY_GUARD_WEBHOOK_DB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_argument(parser)
    parser.add_argument("--listen", default="127.0.0.1:9112", metavar="HOST:PORT",
                        help="address to serve on (default 127.0.0.1:9112)")
    parser.add_argument("--db", default=os.environ.get(DB_ENV) or DEFAULT_DB, metavar="PATH|URL",
                        help="the audit database: a SQLite file path (one webhook per file) or a "
                             "postgresql:// URL (any number of replicas share it); default $"
                             f"{DB_ENV}, else {DEFAULT_DB}")
    parser.add_argument("--dry-run", action="store_true",
                        help="run nothing; record what each action would do")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="accept notifications without a credential (local development only)")
    parser.add_argument("--threads", type=int, default=8, help="HTTP threads (default 8)")
    parser.add_argument("--workers", type=int, default=1,
                        help="threads running actions of any kind (default 1), besides the one "
                             "thread that runs only rollbacks")
    parser.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT, metavar="SECONDS",
                        help="a request's headers must arrive within this (from its first byte, or "
                             f"from the accept for a connection's first request; default {HEADER_TIMEOUT:g})")
    parser.add_argument("--body-timeout", type=float, default=BODY_TIMEOUT, metavar="SECONDS",
                        help=f"and its body within this after them (default {BODY_TIMEOUT:g})")
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT, metavar="SECONDS",
                        help="close a keep-alive connection idle this long (default "
                             f"{IDLE_TIMEOUT:g}: longer than Alertmanager's own 90)")
    parser.add_argument("--max-connections-per-client", type=int, default=MAX_PER_CLIENT, metavar="N",
                        help=f"connections one client address may hold (default {MAX_PER_CLIENT})")
    parser.add_argument("--connection-limit", type=int, default=CONNECTION_LIMIT, metavar="N",
                        help=f"connections in all (default {CONNECTION_LIMIT})")
    parser.add_argument("--lease", type=float, default=15.0, metavar="SECONDS",
                        help="how long a claimed run stays this replica's without a renewal; a "
                             "replica that dies loses its runs to the others after this (default 15)")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen: {text!r} is not HOST:PORT")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def run(args: argparse.Namespace) -> int:
    from prometheus_client import disable_created_metrics

    from .app import create_app, shutdown, state
    from .config import ConfigError, WebhookConfig, read_token
    from .frontdoor import create_front_door
    from .store import StoreLocked, StoreUnavailable
    from .store.base import redact

    disable_created_metrics()  # *_created series only add noise to this process's /metrics
    plan = plan_from_args(args)
    try:
        host, port = parse_listen(args.listen)
        token = read_token(plan)
        if not 1 <= args.lease <= 3600:
            raise ValueError("--lease: must be between 1 and 3600 seconds")
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            if not 0 < getattr(args, name) <= 3600:
                raise ValueError(f"--{name.replace('_', '-')}: must be above 0 and at most 3600 seconds")
        if args.max_connections_per_client < 1 or args.connection_limit < 1:
            raise ValueError("--max-connections-per-client and --connection-limit: must be at least 1")
        config = WebhookConfig(db=args.db, token=token, insecure_no_auth=args.insecure_no_auth,
                               dry_run=args.dry_run, workers=args.workers, lease=args.lease)
        app = create_app(plan, config)
    except (ValueError, StoreLocked, StoreUnavailable) as err:  # ConfigError is a ValueError
        kind = "configuration" if isinstance(err, ConfigError) else "error"
        print(f"canary-guard webhook: {kind}: {err}", file=sys.stderr)
        return 2
    if not token:
        log.warning("authentication is DISABLED (--insecure-no-auth): anyone who can reach "
                    "this port can trigger rollbacks")
    services = state(app)

    server = create_front_door(
        app, host, port, threads=args.threads, max_body=config.max_body,
        header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout, max_per_client=args.max_connections_per_client,
        connection_limit=args.connection_limit,
    )

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Hand the GIL over sooner (default 5 ms): a request waiting behind another thread is answered
    # sooner. Measured (bench_webhook.py, 1,000/s paced): p99 8-17 ms with it, 12-97 ms without;
    # saturation 1,650-2,420/s with, 2,060-2,260/s without (within the machine's noise).
    sys.setswitchinterval(0.001)
    # waitress warns on every queued request when all threads are busy: a burst is not news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    log.info("webhook listening", extra={
        "listen": f"{host}:{port}", "db": redact(args.db), "plan": plan.name, "dry_run": args.dry_run,
        "auth": "token" if token else "disabled", "queued": services.store.queue_depth()})
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        log.info("webhook stopping")
        server.close()
        shutdown(app)
    return 0
