"""``create_app(plan, config)``: assembles the webhook (store, actions, worker, metrics, HTTP).

Nothing happens at import time, so tests build as many apps as they like, each with its own
database. The HTTP parts live in their own modules: receiver (``POST /alerts``), api
(``/api/*``, ``/healthz``, ``/metrics``) and views (``/``).
"""

from __future__ import annotations

import secrets

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from prometheus_client import Counter
from werkzeug.exceptions import HTTPException

from canary_guard import contract
from canary_guard.plan import Plan

from . import api, receiver, views
from .actions import ActionSet
from .auth import Access, AlertmanagerAuth, Users, UsersError
from .config import ConfigError, WebhookConfig, check, read_token
from .context import EXTENSION, WebhookState, json_error
from .escalate import Escalator
from .metrics import WebhookMetrics
from .store import open_store
from .store.review import DECISIONS
from .worker import Worker

__all__ = ["ConfigError", "WebhookConfig", "create_app", "read_token", "shutdown"]


def create_app(plan: Plan, config: WebhookConfig) -> Flask:
    check(plan, config)
    store = open_store(config.db, exclusive=config.exclusive)
    actions = ActionSet(plan)
    metrics = WebhookMetrics([*actions.names(), actions.escalation], list(actions.leaves), store.queue_depth,
                             store.needs_review)
    worker = Worker(store, plan, actions, metrics, dry_run=config.dry_run, threads=config.workers,
                    lease=config.lease)
    recovered = worker.recover()

    auth = AlertmanagerAuth(config.token)
    try:
        users = Users(config.users_file)
    except UsersError as err:
        raise ConfigError(str(err)) from None
    escalator = Escalator(store, plan, config.alertmanagers, config.external_url, registry=metrics.registry)
    decisions_total = Counter(contract.WEBHOOK_DECISIONS.removesuffix("_total"),
                              "Decisions people took on incidents (page and API)", ["decision"],
                              registry=metrics.registry)
    for d in DECISIONS:
        decisions_total.labels(d)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.secret_key = config.session_key or secrets.token_bytes(32)
    https = bool(config.external_url and config.external_url.startswith("https:"))
    app.config.update(SESSION_COOKIE_NAME="canary_guard_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=https)
    app.json = json_provider = DefaultJSONProvider(app)
    json_provider.sort_keys = False  # records keep their fields' order
    app.extensions[EXTENSION] = WebhookState(
        plan=plan, config=config, store=store, actions=actions, metrics=metrics, worker=worker,
        auth=auth,
        receiver=receiver.Receiver(store, metrics, auth, worker.wake, actions.priorities(), config.max_body,
                                   config.dry_run, coalesce=plan.webhook.cooldown),
        recovered=recovered,
        access=Access(users, auth, config.insecure_no_auth), escalator=escalator,
        decisions_total=decisions_total,
    )
    # Flask's documented way to wrap its WSGI callable; mypy sees assigning to a method
    app.wsgi_app = app.extensions[EXTENSION].receiver.mount(app.wsgi_app)  # type: ignore[method-assign]
    for blueprint in (api.bp, api.ops, views.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, _http_error)

    if config.start_worker:
        store.start_background(plan.webhook.retention, plan.webhook.max_deliveries)
        worker.start()
        escalator.start()
    return app


def _http_error(err: HTTPException) -> Response:
    code = (err.name or "error").lower().replace(" ", "_")
    return json_error(err.code or 500, code, err.description or "")


def state(app: Flask) -> WebhookState:
    return app.extensions[EXTENSION]


def shutdown(app: Flask, grace: float = 5.0) -> None:
    """Stop the worker (attempts in flight get ``grace`` seconds) and close the store."""
    s = state(app)
    s.worker.stop(grace)
    s.escalator.stop()
    s.actions.close()
    s.store.close()


