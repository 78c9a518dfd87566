"""The webhook's own Prometheus metrics, in a registry of its own (prefix canary_guard_webhook_)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from canary_guard.contract import RUN_OUTCOMES

P = "canary_guard_webhook_"
REJECT_REASONS = ("unauthorized", "unsupported_media_type", "too_large", "malformed_json",
                  "invalid_notification", "bad_request", "method_not_allowed")


class WebhookMetrics:
    REJECT_REASONS = REJECT_REASONS

    def __init__(self, actions: Iterable[str], steps: Iterable[str], queue_depth: Callable[[], float],
                 needs_review: Callable[[], float]):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.notifications = Counter(P + "notifications_total",
                                     "Notifications accepted and recorded, by notification status",
                                     ["status"], registry=r)
        self.rejected = Counter(P + "rejected_total",
                                "Requests refused before anything was recorded, by reason",
                                ["reason"], registry=r)
        self.alerts = Counter(P + "alerts_total",
                              "Alerts received, by action label (unknown: no such plan action; "
                              "none: no label) and alert status", ["action", "status"], registry=r)
        self.duplicates = Counter(P + "duplicates_total",
                                  "Alerts dropped as repeated deliveries of a known incident "
                                  "(same fingerprint and startsAt)", registry=r)
        self.actions = Counter(P + "actions_total",
                               "Action runs finished, by action and outcome", ["action", "outcome"],
                               registry=r)
        self.attempts = Counter(P + "action_attempts_total",
                                "Attempts of each action step, by outcome", ["action", "outcome"],
                                registry=r)
        self.duration = Histogram(P + "action_duration_seconds", "Duration of one action attempt",
                                  ["action"], registry=r,
                                  buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.cooldown_refusals = Counter(P + "cooldown_refusals_total",
                                         "Action steps refused because their cooldown was running",
                                         ["action"], registry=r)
        self.escalations = Counter(P + "escalations_total",
                                   "Pages raised because an action failed, was refused or was "
                                   "interrupted", ["action"], registry=r)
        queue = Gauge(P + "queue_depth", "Action runs queued (waiting or backing off)", registry=r)
        queue.set_function(queue_depth)
        review = Gauge(P + "needs_review", "Action runs interrupted mid-flight that a human must check",
                       registry=r)
        review.set_function(needs_review)

        self.known = set(actions)
        # Every series a dashboard expects exists with 0 from the first scrape; the hot path
        # uses pre-resolved children.
        self._notif = {s: self.notifications.labels(s) for s in ("firing", "resolved")}
        self._rejected = {k: self.rejected.labels(k) for k in REJECT_REASONS}
        self._alerts: dict[tuple[str, str], object] = {}
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
