"""The webhook's own Prometheus metrics, in a registry of its own (prefix canary_guard_webhook_)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from canary_guard import contract as C
from canary_guard.contract import RUN_OUTCOMES

REJECT_REASONS = ("unauthorized", "unsupported_media_type", "too_large", "malformed_json",
                  "invalid_notification", "bad_request", "method_not_allowed")


class WebhookMetrics:
    REJECT_REASONS = REJECT_REASONS

    def __init__(self, actions: Iterable[str], steps: Iterable[str], queue_depth: Callable[[], float],
                 needs_review: Callable[[], float]):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.notifications = Counter(C.WEBHOOK_NOTIFICATIONS,
                                     "Notifications accepted and recorded, by notification status",
                                     ["status"], registry=r)
        self.rejected = Counter(C.WEBHOOK_REJECTED,
                                "Requests refused before anything was recorded, by reason",
                                ["reason"], registry=r)
        self.alerts = Counter(C.WEBHOOK_ALERTS,
                              "Alerts received, by action label (unknown: no such plan action; "
                              "none: no label) and alert status", ["action", "status"], registry=r)
        self.duplicates = Counter(C.WEBHOOK_DUPLICATES,
                                  "Alerts dropped as repeated deliveries of a known incident "
                                  "(same fingerprint and startsAt)", registry=r)
        self.coalesced = Counter(C.WEBHOOK_COALESCED,
                                 "New firings of an alert (same alert, track and endpoint) recorded "
                                 "against its incident within the cooldown instead of opening one",
                                 registry=r)
        self.actions = Counter(C.WEBHOOK_ACTIONS,
                               "Action runs finished, by action and outcome", ["action", "outcome"],
                               registry=r)
        self.attempts = Counter(C.WEBHOOK_ATTEMPTS,
                                "Attempts of each action step, by outcome", ["action", "outcome"],
                                registry=r)
        self.duration = Histogram(C.WEBHOOK_ACTION_DURATION, "Duration of one action attempt",
                                  ["action"], registry=r,
                                  buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.cooldown_refusals = Counter(C.WEBHOOK_COOLDOWN_REFUSALS,
                                         "Action steps refused because their cooldown was running",
                                         ["action"], registry=r)
        self.escalations = Counter(C.WEBHOOK_ESCALATIONS,
                                   "Pages raised because an action failed, was refused or was "
                                   "interrupted", ["action"], registry=r)
        queue = Gauge(C.WEBHOOK_QUEUE_DEPTH, "Action runs queued (waiting or backing off)", registry=r)
        queue.set_function(queue_depth)
        review = Gauge(C.WEBHOOK_NEEDS_REVIEW, "Action runs interrupted mid-flight that a human must check",
                       registry=r)
        review.set_function(needs_review)

        self.known = set(actions)
        # Every series a dashboard expects exists with 0 from the first scrape; the hot path
        # uses pre-resolved children.
        self._notif = {s: self.notifications.labels(s) for s in ("firing", "resolved")}
        self._rejected = {k: self.rejected.labels(k) for k in REJECT_REASONS}
        self._alerts: dict[tuple[str, str], Counter] = {}
        for name in [*self.known, "unknown", "none"]:
            for status in ("firing", "resolved"):
                self._alerts[(name, status)] = self.alerts.labels(name, status)
        for name in self.known:
            for outcome in RUN_OUTCOMES:
                self.actions.labels(name, outcome)
            self.cooldown_refusals.labels(name)
        self.actions.labels("unknown", "unknown_action")
        for name in steps:
            self.duration.labels(name)

    def action_label(self, action: str | None) -> str:
        """Alert labels are untrusted: only plan action names become label values."""
        if not action:
            return "none"
        return action if action in self.known else "unknown"

    def notification(self, status: str) -> None:
        self._notif[status].inc()

    def reject(self, reason: str) -> None:
        self._rejected[reason].inc()

    def alert(self, action: str | None, status: str) -> None:
        self._alerts[(self.action_label(action), status)].inc()

    def run_finished(self, action: str, outcome: str) -> None:
        self.actions.labels(self.action_label(action), outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
