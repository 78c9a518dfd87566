"""The plan's plain sections: targets, auth, probing, endpoints, SLOs, phases, and the settings
of Prometheus, Alertmanager, the webhook, the demo and the gate's analysis."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from .base import EnvName, HttpToken, Line, Model, Name, PositiveSeconds, Seconds, Url, check_url


class Target(Model):
    """A deployment track that is probed: ``canary``, ``stable``, ..."""

    name: Name
    url: str
    guarded: bool = False  # rollback triggers watch guarded tracks only

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v).rstrip("/")


class Auth(Model):
    """Bearer token for the probed service. The token itself never enters the plan."""

    header: HttpToken = "Authorization"
    scheme: HttpToken | Literal[""] = "Bearer"  # "": the header carries the bare token
    token_env: EnvName | None = None
    token_file: Line | None = None

    def token(self) -> str | None:
        """Read the token from the environment or the file; None when neither is set."""
        if self.token_env and os.environ.get(self.token_env):
            return os.environ[self.token_env].strip()
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return None

    def headers(self) -> dict[str, str]:
        token = self.token()
        if not token:
            return {}
        return {self.header: f"{self.scheme} {token}" if self.scheme else token}


class RateLimits(Model):
    per_endpoint_per_minute: int | None = Field(default=None, gt=0)
    total_per_hour: int | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, gt=0)
    # True when the service exempts the probe's key from its limits (the budget check warns
    # instead of failing then).
    probe_exempt: bool = False


class Probe(Model):
    interval: PositiveSeconds = 15.0
    timeout: PositiveSeconds = 5.0
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    # The timeout may exceed the interval: a probe still running at its next tick skips that
    # tick (the exporter counts it), so a slow endpoint is measured, not cut off at the interval.
    concurrency: int = Field(default=64, gt=0, le=10_000)


class Learned(Model):
    """What ``canary-guard plan learn`` observed on the baseline: evidence for the endpoint's
    timeout and latency thresholds (``plan check`` warns when they come close)."""

    probes: int = Field(ge=1)
    p50: Seconds
    p95: Seconds
    p99: Seconds
    max: Seconds
    track: str | None = None  # the track (or URL) that was probed
    at: str | None = None  # when, ISO 8601


class Endpoint(Model):
    name: Name
    path: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    feature: Name | None = None  # feature-flag name the service's disable API accepts
    required_fields: list[str] = Field(default_factory=list)  # must be present and not null
    critical: bool = True
    # This endpoint's probe timeout, above its own slow tail; None: probe.timeout. The demo's
    # probe_timeout replaces probe.timeout only, never an endpoint's own timeout.
    timeout: PositiveSeconds | None = None
    learned: Learned | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        return v

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if key.lower() == "authorization":
                raise ValueError("put credentials in auth (token_env/token_file), not headers")
        return v


class Criteria(Model):
    """Success criteria of a phase (and the SLOs they come from)."""

    availability: float = Field(default=0.999, gt=0, le=1)
    avg_latency: PositiveSeconds = 0.5
    error_rate: float = Field(default=0.01, ge=0, lt=1)
    p95_latency: PositiveSeconds = 0.5
    p99_latency: PositiveSeconds = 1.0
    all_endpoints_answering: bool = True
    window: PositiveSeconds = 3600.0  # judged over this range (recording rules, gate)


class Phase(Model):
    name: Name
    traffic_percent: float = Field(gt=0, le=100)
    duration: Seconds | None = None  # None: the last phase, no end
    criteria: Criteria = Field(default_factory=Criteria)
    approval: bool = False  # `canary-guard rollout` waits for a person before this phase's weight


class Retry(Model):
    attempts: int = Field(default=3, ge=1, le=20)
    backoff: PositiveSeconds = 2.0  # doubled after each failed attempt
    max_backoff: PositiveSeconds = 60.0


class Prometheus(Model):
    scrape_interval: PositiveSeconds = 15.0
    evaluation_interval: PositiveSeconds = 15.0
    job: Line = "canary-guard"  # reaches PromQL (escaped) and scrape configs


class Alertmanager(Model):
    group_wait: Seconds = 10.0
    group_interval: PositiveSeconds = 1 * 60.0
    repeat_interval: PositiveSeconds = 4 * 3600.0
    webhook_url: Url = "http://canary-guard-webhook:9112/alerts"
    credentials_file: Line = "/etc/alertmanager/secrets/canary-guard-webhook-token"


class Webhook(Model):
    cooldown: Seconds = 600.0
    # Repeat deliveries older than this are pruned from the database (0: keep everything).
    # Incidents, runs and attempts, and the notification that opened each incident, are kept.
    retention: Seconds = 30 * 86400.0
    # At most this many repeat deliveries are kept (the oldest go first), whatever their age:
    # storage stays bounded under any flood (about 1.1 KB each). 0: no limit.
    max_deliveries: int = Field(default=200_000, ge=0)
    retry: Retry = Field(default_factory=Retry)
    token_env: EnvName = "CANARY_GUARD_WEBHOOK_TOKEN"
    token_file: Line | None = None
    # API key for HTTP actions against the service (disable_feature): read like auth.
    service_token_env: EnvName | None = None
    service_token_file: Line | None = None


class Demo(Model):
    """Fast settings that ``canary-guard demo`` applies on top of the plan."""

    probe_interval: PositiveSeconds = 1.0
    probe_timeout: PositiveSeconds = 2.5  # above the latency threshold, or it could never fire
    scrape_interval: PositiveSeconds = 1.0
    evaluation_interval: PositiveSeconds = 1.0
    group_wait: Seconds = 1.0
    group_interval: PositiveSeconds = 1.0
    gate_window: PositiveSeconds = 60.0
    traffic_window: PositiveSeconds = 10.0  # replaces traffic.window: the demo's users are many
    # the demo's simulated users (canary-guard traffic) while a traffic scenario runs: requests
    # per second in all, and the canary's share (far above a 5% phase, so that a few seconds
    # hold what hours of phase 1 would)
    traffic_rate: float = Field(default=200.0, gt=0, le=5000)
    traffic_canary_percent: float = Field(default=50.0, gt=0, le=100)
    cooldown: Seconds = 5.0  # the demo runs one incident after another


class Analysis(Model):
    """How the gate judges evidence: confidence for the phase criteria, and the
    canary-versus-baseline comparison (significance and practical margins)."""

    baseline: Name | None = None  # track to compare with; None: the first target not guarded
    alpha: float = Field(default=0.01, gt=0, lt=1)  # family-wise, Holm-corrected over endpoints
    confidence: float = Field(default=0.95, gt=0, lt=1)  # a criterion passes when shown at this level
    latency_margin: float = Field(default=0.10, ge=0)  # canary median slower by this fraction ...
    latency_effect: float = Field(default=0.147, ge=0, le=1)  # ... or Cliff's delta at least this
    # ... and slower by at least this much in absolute terms (median or mean): a few ms on a fast
    # endpoint is no regression. None: 5% of the phase's p95 objective (500ms -> 25ms).
    latency_abs_margin: Seconds | None = None
    error_margin: float = Field(default=0.005, ge=0, lt=1)  # failure ratio higher by this much ...
    # ... and at least this many more failures than the baseline's ratio predicts
    error_abs_margin: int = Field(default=5, ge=0)
    min_probes: int = Field(default=30, ge=1)  # per endpoint and track before comparing
