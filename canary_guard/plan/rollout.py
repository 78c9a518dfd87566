"""The plan's ``rollout`` section: how ``canary-guard rollout`` walks the phases (a phase that
waits for a person says so itself: ``phases[N].approval: true``).

    rollout:
      weight: {kind: ingress_nginx_weight, ingress: recoveryos-canary, namespace: recoveryos}
      rollback: rollback          # a plan action, run after the weight is back at 0
      gate_interval: 5m           # while the gate holds, ask it again this often
      hold_timeout: 12h           # a phase held this long pauses for a person
      watch_interval: 15s         # how often to look for a rollback by the webhook
      webhook: {url: http://canary-guard-webhook:9112, token_env: CANARY_GUARD_WEBHOOK_READ_TOKEN}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from .actions import DeploymentRatio, Http, HttpRouteWeight, IngressNginxWeight, WeightAction
from .base import Model, Name, PositiveSeconds, Seconds

if TYPE_CHECKING:  # the plan model imports this module
    from .model import Plan


class RolloutWebhook(Model):
    """Where the rollout asks whether the webhook rolled back (``GET /api/actions``)."""

    url: str  # the webhook's base URL
    token_env: str | None = None  # a read token for /api/actions, once operator auth is on
    token_file: str | None = None
    timeout: PositiveSeconds = 5.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")


class Rollout(Model):
    weight: WeightAction
    rollback: Name | None = None  # None: a rollback only sets the weight to 0
    gate_interval: PositiveSeconds = 300.0
    hold_timeout: Seconds = 12 * 3600.0  # 0: hold for as long as it takes
    gate_timeout: PositiveSeconds = 120.0  # one gate run
    watch_interval: PositiveSeconds = 15.0
    # Stop when an alert whose action rolls back fires (Prometheus ALERTS): the webhook is
    # rolling the release back, and the rollout must not add a second undo.
    watch_alerts: bool = True
    webhook: RolloutWebhook | None = None


def problems(plan: Plan) -> list[str]:
    """Checks that span sections: called from ``Plan._references``."""
    r: Rollout | None = plan.rollout
    if r is None:
        return []
    out: list[str] = []
    if r.rollback is not None and r.rollback not in plan.actions:
        known = ", ".join(sorted(plan.actions)) or "none"
        out.append(f"rollout.rollback: {r.rollback!r} is not defined in actions (defined: {known})")
    if isinstance(r.weight, IngressNginxWeight | HttpRouteWeight | DeploymentRatio):
        for i, ph in enumerate(plan.phases):
            if ph.traffic_percent != int(ph.traffic_percent):
                out.append(f"phases[{i}].traffic_percent: {ph.traffic_percent:g} is not a whole percent; "
                           f"{r.weight.kind} sets whole percents")
    if isinstance(r.weight, Http) and r.weight.body is not None and not isinstance(r.weight.body, dict) \
            and not _has_placeholder(r.weight.body):
        out.append("rollout.weight.body: must be a mapping (the weight is added as its `weight` field) "
                   "or hold \"{weight}\" where the weight goes")
    return out


def _has_placeholder(value: Any) -> bool:
    if value == "{weight}":
        return True
    if isinstance(value, dict):
        return any(_has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False
