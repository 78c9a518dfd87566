"""``canary-guard webhook``: receive Alertmanager notifications and run the plan's actions."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from canary_guard.cli import add_plan_argument, plan_from_args

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
    from waitress import create_server

    from .app import create_app, shutdown, state
    from .config import ConfigError, WebhookConfig, read_token
    from .store import StoreLocked, StoreUnavailable
    from .store.base import redact

    disable_created_metrics()  # *_created series only add noise to this process's /metrics
    plan = plan_from_args(args)
    try:
        host, port = parse_listen(args.listen)
        token = read_token(plan)
        if not 1 <= args.lease <= 3600:
            raise ValueError("--lease: must be between 1 and 3600 seconds")
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
    for rid in services.recovered:
        log.warning("marked needs_review after restart", extra={"run": rid})

    server = create_server(
        app, host=host, port=port, threads=args.threads, ident="canary-guard",
        # The receiver answers 413 with a JSON error up to 4x the limit; beyond that waitress does.
        max_request_body_size=4 * config.max_body, connection_limit=1000, backlog=2048,
        channel_timeout=30, clear_untrusted_proxy_headers=True,
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
