"""The service's own request metrics at GET /metrics, exactly as RecoveryOS exposes them.

prometheus-client with its default buckets, labels endpoint/version/env(/status, error_type) as
the reference lists them. Every request the sandbox serves on an endpoint route is counted, the
exporter's probes included (they are requests like any other; their User-Agent marks them), so
that the traffic triggers see what they would see in production. Like the real service, a
series appears when it is first counted, except the success/error pair of each endpoint.

What the service itself can know is counted, nothing more: a 200 whose body is null or leaks PII
is a success here (only the probes judge content), a reset or an answer the client gave up on
is an error.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from canary_guard import contract

ENV = "sandbox"  # a fixed string in the service's code: the same on every pod, canary or stable

LABELS = (contract.ENDPOINT, contract.SERVICE_VERSION, contract.SERVICE_ENV)


def error_type(outcome: int | str, feature_disabled: bool = False) -> str | None:
    """The error_type of an answer (an HTTP status, or how the request ended), None: success."""
    if isinstance(outcome, str):
        return {"reset": "reset", "client_closed": "reset"}.get(outcome, "timeout")
    if outcome < 400:
        return None
    if outcome == 503:
        return contract.FEATURE_DISABLED if feature_disabled else "unavailable"
    return {400: "bad_request", 401: "unauthorized", 403: "unauthorized", 404: "not_found",
            405: "not_found", 429: "rate_limited"}.get(outcome, "internal" if outcome >= 500
                                                        else "bad_request")


def _base(name: str) -> str:
    return name.removesuffix("_total")  # prometheus-client adds the suffix itself


class ServiceMetrics:
    """One registry per sandbox: several sandboxes in one process never share counters."""

    def __init__(self, endpoints: list[str], version: str):
        self.version = version
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            _base(contract.SERVICE_REQUESTS), "Requests served, by endpoint and status.",
            [*LABELS, contract.SERVICE_STATUS], registry=self.registry)
        self.duration = Histogram(
            contract.SERVICE_DURATION, "Time from request to complete answer, in seconds.",
            list(LABELS), registry=self.registry)
        self.errors = Counter(
            _base(contract.SERVICE_ERRORS), "Failed requests, by endpoint and error type.",
            [*LABELS, contract.SERVICE_ERROR_TYPE], registry=self.registry)
        self.active = Gauge(
            contract.SERVICE_ACTIVE, "Requests being served now.", list(LABELS),
            registry=self.registry)
        for ep in endpoints:
            for status in contract.SERVICE_STATUSES:
                self.requests.labels(ep, version, ENV, status)
            self.duration.labels(ep, version, ENV)
            self.active.labels(ep, version, ENV)

    def started(self, endpoint: str) -> None:
        self.active.labels(endpoint, self.version, ENV).inc()

    def finished(self, endpoint: str, outcome: int | str, seconds: float,
                 feature_disabled: bool = False) -> None:
        """Count one request: its HTTP status (or "reset", "hang"...) and how long it took."""
        labels = (endpoint, self.version, ENV)
        self.active.labels(*labels).dec()
        kind = error_type(outcome, feature_disabled)
        self.requests.labels(*labels, "success" if kind is None else "error").inc()
        if kind is not None:
            self.errors.labels(*labels, kind).inc()
        self.duration.labels(*labels).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
