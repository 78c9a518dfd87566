"""The webhook's run-time settings and its credential (read from the plan's env var or file)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from canary_guard.plan import Plan

DEFAULT_DB = "./canary-guard-webhook.db"
MAX_BODY = 1 << 20  # 1 MiB: a notification with 1,000 alerts is far below it

# The front door (frontdoor.py): how long a request may take to arrive, how many connections.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
IDLE_TIMEOUT = 120.0  # Alertmanager (Go's http.Transport) drops idle connections after 90 s
MAX_PER_CLIENT = 64
CONNECTION_LIMIT = 4096


@dataclass
class WebhookConfig:
    db: str = DEFAULT_DB  # a file path (SQLite) or a postgresql:// URL
    token: str | None = None  # the shared secret Alertmanager presents; None: see insecure_no_auth
    insecure_no_auth: bool = False  # development only: accept unauthenticated notifications
    dry_run: bool = False
    max_body: int = MAX_BODY
    workers: int = 1  # worker threads running actions
    start_worker: bool = True  # tests drive the worker by hand with False
    exclusive: bool = True  # SQLite: hold a lock file, one webhook per database
    lease: float = 15.0  # seconds a claimed run stays this process's without a renewal
    # people (issue 11)
    users_file: str | None = None  # operators and viewers: NAME ROLE CREDENTIAL lines (auth.py)
    alertmanagers: list[str] = field(default_factory=list)  # escalations are posted to each
    external_url: str | None = None  # how people reach this webhook (links in notifications)
    session_key: bytes | None = None  # signs login sessions; None: random (sessions end on restart)


class ConfigError(ValueError):
    pass


def read_token(plan: Plan) -> str | None:
    """The webhook's credential: env ``plan.webhook.token_env``, else ``plan.webhook.token_file``."""
    w = plan.webhook
    if w.token_env and os.environ.get(w.token_env, "").strip():
        return os.environ[w.token_env].strip()
    if w.token_file:
        try:
            text = Path(w.token_file).read_text().strip()
        except OSError as err:
            raise ConfigError(f"webhook.token_file: cannot read {w.token_file}: {err.strerror}") from None
        return text or None
    return None


def check(plan: Plan, config: WebhookConfig) -> None:
    """Refuse settings that would leave the webhook open or broken."""
    if not config.token and not config.insecure_no_auth:
        raise ConfigError(
            f"no webhook credential: set {plan.webhook.token_env} or webhook.token_file in the plan "
            "(or pass --insecure-no-auth for local development only)"
        )
