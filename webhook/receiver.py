"""``POST /alerts``: the one request path. Authenticate, validate, record, reply; nothing else.

It is a plain WSGI handler mounted in front of Flask, not a Flask view: every request to
``/alerts`` (good, bad, chunked) takes this path, and it skips Flask's request and response
objects, which cost about 0.3 ms of CPU per notification, a third of the whole request
(measured with bench/bench_webhook.py; see docs/webhook.md, "Performance").

The notification is committed before the 2xx reply (an acknowledged notification is never
lost); its actions run later on the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from . import payload
from .auth import CHALLENGE, UNAUTHORIZED_DETAIL, AlertmanagerAuth
from .context import json_bytes
from .metrics import WebhookMetrics
from .store import QUEUED, Store

log = logging.getLogger("webhook")

PATH = "/alerts"
JSON_MIMETYPES = ("application/json",)
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed",
413: "Request Entity Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error"}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Reply(Exception):
    """A refusal: status, machine-readable error, detail, extra headers."""

    def __init__(self, status: int, error: str, detail: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


class Receiver:
    """Takes notifications: validates and records each; wakes the worker when runs were queued."""

    def __init__(self, store: Store, metrics: WebhookMetrics, auth: AlertmanagerAuth,
                 wake: Callable[[], None], priorities: dict[str, int], max_body: int,
                 dry_run: bool = False, coalesce: float = 0.0):
        self.store, self.metrics, self.auth, self.wake = store, metrics, auth, wake
        self.priorities, self.max_body, self.dry_run = priorities, max_body, dry_run
        self.coalesce = coalesce  # the plan's cooldown: new firings of an alert within it are one incident

    def mount(self, app: WSGIApp) -> WSGIApp:
        """A WSGI app that sends ``/alerts`` here and everything else to ``app``."""

        def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == PATH:
                return self(environ, start_response)
            return app(environ, start_response)

        return wsgi

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers: tuple[tuple[str, str], ...] = ()
        try:
            body = self.read(environ)
            status, reply = self.accept(body)
        except Reply as r:
            if r.error in self.metrics.REJECT_REASONS:
                self.metrics.reject(r.error)
            status, reply, headers = r.status, json_bytes({"error": r.error, "detail": r.detail}), r.headers
        except Exception:
            log.exception("recording a notification failed")
            status, reply = 500, json_bytes({"error": "internal_server_error",
                                             "detail": "the notification was not recorded"})
        start_response(f"{status} {_REASONS[status]}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(reply))), *headers])
        return [reply]

    def read(self, environ: dict[str, Any]) -> bytes:
        """The body of an authenticated JSON POST within the size limit; raises Reply."""
        if environ.get("REQUEST_METHOD") != "POST":
            raise Reply(405, "method_not_allowed", "POST a notification to /alerts",
                        (("Allow", "POST"),))
        if not self.auth.check(environ.get("HTTP_AUTHORIZATION")):
            raise Reply(401, "unauthorized", UNAUTHORIZED_DETAIL, (("WWW-Authenticate", CHALLENGE),))
        ctype = environ.get("CONTENT_TYPE") or ""
        if ctype.partition(";")[0].strip().lower() not in JSON_MIMETYPES:
            raise Reply(415, "unsupported_media_type",
                        f"Content-Type must be application/json, got {(ctype or 'none')[:100]}")
        limit, stream = self.max_body, environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            if not length.isdigit():
                raise Reply(400, "bad_request", "Content-Length is not a number")
            n = int(length)
            if n > limit:
                raise Reply(413, "too_large", f"body of {n} bytes exceeds the {limit} byte limit")
            body = stream.read(n) if n else b""
            if len(body) != n:
                raise Reply(400, "bad_request", "incomplete body: the client sent less than its "
                                                "Content-Length")
            return body
        if not environ.get("wsgi.input_terminated"):
            return b""  # no Content-Length and not chunked: no body (RFC 9112, 6.3)
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise Reply(413, "too_large", f"body exceeds the {limit} byte limit")
        return body

    def accept(self, body: bytes) -> tuple[int, bytes]:
        """Validate and record a notification body: (HTTP status, JSON reply)."""
        metrics = self.metrics
        try:
            notification, text = payload.parse(body)
        except payload.PayloadError as err:
            raise Reply(400, err.error, str(err)) from None
        recorded = self.store.record(notification, text, self.priorities,
                                     dry_run=self.dry_run, coalesce=self.coalesce)
        metrics.notification(notification.status)
        queued = dups = coalesced = 0
        out = []
        for a, r in zip(notification.alerts, recorded.alerts, strict=True):
            metrics.alert(a.action, a.status)
            if r.duplicate:
                dups += 1
            if r.coalesced_into is not None:
                coalesced += 1
            if r.run_status == QUEUED:
                queued += 1
            elif r.run_id is not None and r.run_status is not None:
                metrics.run_finished(a.action or "", r.run_status)
            out.append({"incident": r.incident_id, "status": r.status, "new": r.new,
                        "duplicate": r.duplicate, "coalesced_into": r.coalesced_into, "run": r.run_id,
                        "run_status": r.run_status})
        if dups:
            metrics.duplicates.inc(dups)
        if coalesced:
            metrics.coalesced.inc(coalesced)
        if queued:
            self.wake()
        return 200, json_bytes({"status": "recorded", "notification": recorded.notification_id,
                                "alerts": out})
