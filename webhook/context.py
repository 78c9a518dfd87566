"""What every part of the HTTP layer reads: this app's services, and the JSON error shape."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, jsonify

if TYPE_CHECKING:
    from prometheus_client import Counter

    from canary_guard.plan import Plan

    from .actions import ActionSet
    from .auth import Access, AlertmanagerAuth
    from .config import WebhookConfig
    from .escalate import Escalator
    from .metrics import WebhookMetrics
    from .receiver import Receiver
    from .store import Store
    from .worker import Worker

EXTENSION = "canary_guard_webhook"


@dataclass
class WebhookState:
    plan: Plan
    config: WebhookConfig
    store: Store
    actions: ActionSet
    metrics: WebhookMetrics
    worker: Worker
    auth: AlertmanagerAuth
    receiver: Receiver
    # people (issue 11): who may read and decide, escalation to Alertmanager, decisions counter
    access: Access
    escalator: Escalator
    decisions_total: Counter
    recovered: list[int] = field(default_factory=list)  # runs marked needs_review at start


def current() -> WebhookState:
    """The services of the app handling this request."""
    return current_app.extensions[EXTENSION]


def json_error(status: int, code: str, detail: str, **headers: str) -> Response:
    """``{"error": code, "detail": ...}``: what every refusal looks like."""
    resp = jsonify({"error": code, "detail": detail})
    resp.status_code = status
    resp.headers.update(headers)
    return resp


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
