"""``canary-guard webhook``: receive Alertmanager notifications and run the plan's actions."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import NoReturn

from canary_guard.cli import add_plan_argument, plan_from_args

from .config import BODY_TIMEOUT, CONNECTION_LIMIT, HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_PER_CLIENT

log = logging.getLogger("webhook")

DEFAULT_DB = "./canary-guard-webhook.db"
# The database from the environment: a PostgreSQL URL with its password comes from a Secret,
# never from the command line (which every user of the machine can read).
DB_ENV = "CANARY_GUARD_WEBHOOK_DB"
USERS_ENV = "CANARY_GUARD_WEBHOOK_USERS"


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
    people = parser.add_argument_group("people (operators, escalation)")
    people.add_argument("--users", metavar="FILE", default=os.environ.get(USERS_ENV) or None,
                        help="operators and read-only viewers: NAME ROLE CREDENTIAL lines with salted "
                             f"password hashes or token hashes (default ${USERS_ENV}); without it only "
                             "Alertmanager's token can read / and /api/*, and nobody can decide")
    people.add_argument("--add-user", metavar="NAME",
                        help="add NAME to --users with a password read from stdin (or asked), then exit")
    people.add_argument("--add-token", metavar="NAME",
                        help="add an API token for NAME to --users, print the token once, then exit")
    people.add_argument("--role", choices=("operator", "viewer"), default="operator",
                        help="role for --add-user/--add-token (default operator)")
    people.add_argument("--alertmanager", action="append", default=[], metavar="URL",
                        help="post CanaryGuardActionFailed to this Alertmanager (API v2) while an action "
                             "failure waits for a person; repeat for each member of an HA pair")
    people.add_argument("--external-url", metavar="URL",
                        help="how people reach this webhook (the incident link in notifications)")
    people.add_argument("--session-key-file", metavar="FILE",
                        help="a file with the secret that signs login sessions (replicas share it); "
                             "default: a random key, sessions end when the process stops")
    parser.add_argument("--lease", type=float, default=15.0, metavar="SECONDS",
                        help="how long a claimed run stays this replica's without a renewal; a "
                             "replica that dies loses its runs to the others after this (default 15)")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen: {text!r} is not HOST:PORT")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def check_options(args: argparse.Namespace) -> None:
    """The numeric and URL options, each within its range (ValueError naming the option)."""
    if not 1 <= args.lease <= 3600:
        raise ValueError("--lease: must be between 1 and 3600 seconds")
    for name in ("header_timeout", "body_timeout", "idle_timeout"):
        if not 0 < getattr(args, name) <= 3600:
            raise ValueError(f"--{name.replace('_', '-')}: must be above 0 and at most 3600 seconds")
    if args.max_connections_per_client < 1 or args.connection_limit < 1:
        raise ValueError("--max-connections-per-client and --connection-limit: must be at least 1")
    for url in [*args.alertmanager, *([args.external_url] if args.external_url else [])]:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r}: --alertmanager and --external-url take http(s):// URLs")


def read_session_key(args: argparse.Namespace) -> bytes | None:
    """The key that signs session cookies, from --session-key-file (None: a random one)."""
    if not args.session_key_file:
        return None
    try:
        return open(args.session_key_file, "rb").read().strip() or None
    except OSError as err:
        raise ValueError(f"--session-key-file: cannot read {args.session_key_file}: "
                         f"{err.strerror}") from None


def warn_unguarded(args: argparse.Namespace, token: str | None) -> None:
    """Say at start-up what this configuration leaves unprotected or unannounced."""
    if not token:
        log.warning("authentication is DISABLED (--insecure-no-auth): anyone who can reach "
                    "this port can trigger rollbacks")
    if not args.alertmanager:
        log.warning("no --alertmanager: a failed action is shown on the page and /healthz, but no "
                    "CanaryGuardActionFailed alert tells anyone")
    if not args.users:
        log.warning("no --users: only Alertmanager's token can read the page and /api/*, and nobody "
                    "can decide on incidents")


def run(args: argparse.Namespace) -> int:
    from prometheus_client import disable_created_metrics

    from .app import create_app, shutdown, state
    from .config import ConfigError, WebhookConfig, read_token
    from .frontdoor import create_front_door
    from .store import StoreLocked, StoreUnavailable
    from .store.base import redact

    disable_created_metrics()  # *_created series only add noise to this process's /metrics
    if args.add_user or args.add_token:
        return add_credential(args)
    plan = plan_from_args(args)
    try:
        host, port = parse_listen(args.listen)
        token = read_token(plan)
        check_options(args)
        session_key = read_session_key(args)
        config = WebhookConfig(db=args.db, token=token, insecure_no_auth=args.insecure_no_auth,
                               dry_run=args.dry_run, workers=args.workers, lease=args.lease,
                               users_file=args.users, alertmanagers=args.alertmanager,
                               external_url=args.external_url, session_key=session_key)
        app = create_app(plan, config)
    except (ValueError, StoreLocked, StoreUnavailable) as err:  # ConfigError is a ValueError
        kind = "configuration" if isinstance(err, ConfigError) else "error"
        print(f"canary-guard webhook: {kind}: {err}", file=sys.stderr)
        return 2
    warn_unguarded(args, token)
    services = state(app)

    server = create_front_door(
        app, host, port, threads=args.threads, max_body=config.max_body,
        header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout, max_per_client=args.max_connections_per_client,
        connection_limit=args.connection_limit,
    )

    def stop(signum: int, frame: object) -> NoReturn:
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


def add_credential(args: argparse.Namespace) -> int:
    """``--add-user NAME`` / ``--add-token NAME``: append a hashed credential to the users file."""
    import getpass
    import secrets

    from .auth import Users, UsersError, hash_password, hash_token

    if not args.users:
        print("canary-guard webhook: --add-user/--add-token need --users FILE", file=sys.stderr)
        return 2
    users = Users(None)
    users.path = args.users
    try:
        if args.add_user:
            if sys.stdin.isatty():
                password = getpass.getpass(f"password for {args.add_user}: ")
            else:
                password = sys.stdin.readline().rstrip("\n")
            if len(password) < 8:
                print("canary-guard webhook: the password needs at least 8 characters", file=sys.stderr)
                return 2
            users.add(args.add_user, args.role, hash_password(password))
            print(f"added {args.add_user} ({args.role}) to {args.users}")
        else:
            token = secrets.token_urlsafe(32)
            users.add(args.add_token, args.role, hash_token(token))
            print(token)  # shown once; only its hash is kept
            print(f"added a token for {args.add_token} ({args.role}) to {args.users}", file=sys.stderr)
    except UsersError as err:
        print(f"canary-guard webhook: {err}", file=sys.stderr)
        return 2
    return 0
