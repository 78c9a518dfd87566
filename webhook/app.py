"""The HTTP layer: parse, authenticate, validate, record, reply. Nothing else.

``create_app(plan, config)`` builds everything (store, actions, worker, metrics); nothing
happens at import time, so tests build as many apps as they like, each with its own database.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from canary_guard.durations import parse_duration
from canary_guard.plan import Plan

from . import payload
from .actions import ActionSet
from .metrics import WebhookMetrics
from .store import NEEDS_REVIEW, QUEUED, RUN_STATUSES, Store
from .worker import Worker

log = logging.getLogger("webhook")

DEFAULT_DB = "./canary-guard-webhook.db"
MAX_BODY = 1 << 20  # 1 MiB: a notification with 1,000 alerts is far below it
JSON_MIMETYPES = ("application/json",)


@dataclass
class WebhookConfig:
    db: str = DEFAULT_DB
    token: str | None = None  # the shared secret Alertmanager presents; None: see insecure_no_auth
    insecure_no_auth: bool = False  # development only: accept unauthenticated notifications
    dry_run: bool = False
    max_body: int = MAX_BODY
    workers: int = 1  # worker threads running actions
    start_worker: bool = True  # tests drive the worker by hand with False
    exclusive: bool = True  # hold a lock file: one webhook per database


class ConfigError(ValueError):
    pass


def read_token(plan: Plan) -> str | None:
    """The webhook's credential: env ``plan.webhook.token_env``, else ``plan.webhook.token_file``."""
    import os
    from pathlib import Path

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


def create_app(plan: Plan, config: WebhookConfig) -> Flask:
    if not config.token and not config.insecure_no_auth:
        raise ConfigError(
            f"no webhook credential: set {plan.webhook.token_env} or webhook.token_file in the plan "
            "(or pass --insecure-no-auth for local development only)"
        )
    store = Store(config.db, exclusive=config.exclusive)
    actions = ActionSet(plan)
    metrics = WebhookMetrics([*actions.names(), actions.escalation], list(actions.leaves), store.queue_depth,
                             lambda: store.counts().get("runs_" + NEEDS_REVIEW, 0))
    worker = Worker(store, plan, actions, metrics, dry_run=config.dry_run, threads=config.workers)
    recovered = worker.recover()
    expected = config.token.encode() if config.token else None
    known_actions = set(plan.actions)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.json.sort_keys = False
    app.extensions["canary_guard_webhook"] = {
        "store": store, "worker": worker, "metrics": metrics, "actions": actions, "plan": plan,
        "config": config, "recovered": recovered,
    }

    def error(status: int, code: str, detail: str, **headers: str) -> Response:
        resp = jsonify({"error": code, "detail": detail})
        resp.status_code = status
        resp.headers.update(headers)
        return resp

    def authorized(header: str | None) -> bool:
        if expected is None:
            return True
        if not header:
            return False
        scheme, _, cred = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            given = cred.strip().encode()
        elif scheme == "basic":
            try:
                decoded = base64.b64decode(cred.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            given = decoded.partition(b":")[2]  # any user; the password is the token
        else:
            return False
        return hmac.compare_digest(given, expected)

    @app.post("/alerts")
    def alerts() -> Response:
        if not authorized(request.headers.get("Authorization")):
            metrics.reject("unauthorized")
            return error(401, "unauthorized", "missing or wrong credentials: send "
                         "'Authorization: Bearer <token>' (or basic auth with the token as password)",
                         **{"WWW-Authenticate": 'Bearer realm="canary-guard", Basic realm="canary-guard"'})
        if request.mimetype not in JSON_MIMETYPES:
            metrics.reject("unsupported_media_type")
            got = request.content_type or "none"
            return error(415, "unsupported_media_type",
                         f"Content-Type must be application/json, got {got[:100]}")
        length = request.content_length
        if length is not None and length > config.max_body:
            metrics.reject("too_large")
            return error(413, "too_large", f"body of {length} bytes exceeds the {config.max_body} byte limit")
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            metrics.reject("too_large")
            return error(413, "too_large", f"body exceeds the {config.max_body} byte limit")
        status, reply = accept(body)
        return Response(reply, status=status, content_type="application/json")

    def accept(body: bytes) -> tuple[int, bytes]:
        """Validate and record a notification body: (HTTP status, JSON reply)."""
        try:
            notification, _ = payload.parse(body)
        except payload.PayloadError as err:
            metrics.reject(err.error)
            return 400, _dumps({"error": err.error, "detail": str(err)})
        recorded = store.record(notification, body.decode("utf-8", "replace"), known_actions,
                                dry_run=config.dry_run)
        metrics.notification(notification.status)
        queued = dups = 0
        out = []
        for a, r in zip(notification.alerts, recorded.alerts, strict=True):
            metrics.alert(a.action, a.status)
            if r.duplicate:
                dups += 1
            if r.run_status == QUEUED:
                queued += 1
            elif r.run_id is not None:
                metrics.run_finished(a.action or "", r.run_status)
            out.append({"incident": r.incident_id, "status": r.status, "new": r.new,
                        "duplicate": r.duplicate, "run": r.run_id, "run_status": r.run_status})
        if dups:
            metrics.duplicates.inc(dups)
        if queued:
            worker.wake()
        return 200, _dumps({"status": "recorded", "notification": recorded.notification_id, "alerts": out})

    flask_wsgi = app.wsgi_app

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        """The hot path: a plain ``POST /alerts`` skips Flask's request and response objects.

        Only the common, well-formed case is taken here: a Content-Length within the limit, the
        right credentials and content type. Anything else (an error to explain, a chunked body,
        a bad credential) goes to the Flask view above, which answers it the same way.
        """
        if environ.get("PATH_INFO") != "/alerts" or environ.get("REQUEST_METHOD") != "POST":
            return flask_wsgi(environ, start_response)
        length = environ.get("CONTENT_LENGTH")
        if not length or not length.isdigit() or int(length) > config.max_body:
            return flask_wsgi(environ, start_response)
        if (environ.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower() not in JSON_MIMETYPES:
            return flask_wsgi(environ, start_response)
        if not authorized(environ.get("HTTP_AUTHORIZATION")):
            return flask_wsgi(environ, start_response)
        length = int(length)
        body = environ["wsgi.input"].read(length) if length else b""
        if len(body) != length:  # the client went away mid-body
            status, reply = 400, _dumps({"error": "bad_request", "detail": "incomplete body"})
        else:
            try:
                status, reply = accept(body)
            except Exception:
                log.exception("recording a notification failed")
                status, reply = 500, _dumps({"error": "internal_server_error",
                                             "detail": "the notification was not recorded"})
        start_response(_STATUS[status], [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(reply)))])
        return [reply]

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]

    @app.get("/healthz")
    def healthz() -> Response:
        counts = store.counts()
        worker_ok = worker.alive() or not config.start_worker
        body = {
            "status": "ok" if worker_ok else "worker stopped",
            "dry_run": config.dry_run,
            "auth": "token" if expected else "disabled (--insecure-no-auth)",
            "queue_depth": counts.get("runs_" + QUEUED, 0),
            "needs_review": counts.get("runs_" + NEEDS_REVIEW, 0),
            "notifications": counts["notifications"],
            "incidents": counts["incidents"],
        }
        resp = jsonify(body)
        resp.status_code = 200 if worker_ok else 503
        return resp

    @app.get("/metrics")
    def prom_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @app.get("/api/actions")
    def api_actions() -> Response:
        args = request.args
        try:
            status = args.get("status") or None
            if status and status not in RUN_STATUSES:
                raise ValueError(f"status: must be one of {', '.join(RUN_STATUSES)}")
            since = parse_since(args["since"]) if args.get("since") else None
            limit = _int(args.get("limit", "100"), "limit", 1, 10_000)
            incident = _int(args["incident"], "incident", 1, 2**62) if args.get("incident") else None
        except ValueError as err:
            return error(400, "bad_query", str(err))
        runs = store.actions(action=args.get("action") or None, status=status,
                             endpoint=args.get("endpoint") or None, since=since,
                             incident=incident, limit=limit)
        return jsonify({"count": len(runs), "dry_run": config.dry_run, "actions": runs})

    @app.get("/api/incidents")
    def api_incidents() -> Response:
        try:
            limit = _int(request.args.get("limit", "100"), "limit", 1, 10_000)
        except ValueError as err:
            return error(400, "bad_query", str(err))
        return jsonify({"incidents": store.incidents(limit)})

    @app.get("/")
    def index() -> str:
        incidents = store.incidents(50)
        runs = store.actions(limit=500)
        by_incident: dict[Any, list[dict[str, Any]]] = {}
        for run in runs:
            key = run["incident"]["id"] if run["incident"] else None
            by_incident.setdefault(key, []).append(run)
        for lst in by_incident.values():
            lst.reverse()  # oldest first, as it happened
        review = [r for r in runs if r["status"] == NEEDS_REVIEW]
        return render_template("index.html", plan=plan, incidents=incidents, runs=by_incident,
                               review=review, counts=store.counts(), config=config,
                               escalation=actions.escalation)

    @app.template_filter("ts")
    def _ts(value: float | None) -> str:
        if value is None:
            return "-"
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(value))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        code = (err.name or "error").lower().replace(" ", "_")
        return error(err.code or 500, code, err.description or "")

    if config.start_worker:
        store.start_checkpointer()
        if plan.webhook.retention:
            store.start_pruner(plan.webhook.retention)
        worker.start()
    return app


_STATUS = {200: "200 OK", 400: "400 Bad Request", 500: "500 Internal Server Error"}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


_EPOCH_RE = re.compile(r"^\d+(\.\d+)?$")


def parse_since(text: str, now: float | None = None) -> float:
    """``since=``: unix seconds, an RFC 3339 time, or a duration ago ("10m", "1h")."""
    now = time.time() if now is None else now
    if _EPOCH_RE.match(text):
        return float(text)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return now - parse_duration(text)
    except ValueError:
        raise ValueError(f"since: {text[:40]!r} is neither unix seconds, an RFC 3339 time nor "
                         "a duration such as 10m") from None


def _int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: must be a whole number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name}: must be between {lo} and {hi}")
    return value


def shutdown(app: Flask, grace: float = 5.0) -> None:
    """Stop the worker (attempts in flight get ``grace`` seconds) and close the store."""
    state = app.extensions["canary_guard_webhook"]
    state["worker"].stop(grace)
    state["actions"].close()
    state["store"].close()
