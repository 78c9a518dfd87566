"""The plan: one YAML file that every component reads.

A plan is parsed and validated into the models below; components only ever see the model.
Every validation problem is reported with its field path (``endpoints[3].path: must start
with /``) so that a user can find and fix it.

One module per part of the plan, named after what it holds:

- ``base``: the base model, name and duration types, :class:`PlanError`;
- ``sections``: targets, auth, probing, endpoints, SLOs, phases and component settings;
- ``triggers``: rollback triggers;
- ``actions``: what the webhook (and the rollout) can run;
- ``rollout``: how ``canary-guard rollout`` walks the phases (weight actions are in ``actions``);
- ``model``: :class:`Plan` itself, the checks that span sections and derived values;
- ``notify``: who is told (Slack, e-mail, PagerDuty, webhooks), rendered into Alertmanager;
- ``traffic``: the service's own request metrics, judged by traffic triggers;
- ``load``: YAML in, validated model out.

A new section (``notify``, ``traffic``, ``rollout``...) gets a module of its own, a field on
:class:`Plan`, and, when it refers to other sections, a ``problems(plan)`` check called from
``Plan._references``.
"""

from .actions import (
    ACTION_KINDS,
    WEIGHT_KINDS,
    WEIGHT_PLACEHOLDER,
    Action,
    Command,
    DeploymentRatio,
    DisableFeature,
    Http,
    HttpRouteWeight,
    IngressNginxWeight,
    KubectlRollback,
    Page,
    Sequence,
    WeightAction,
)
from .base import ALERT_RE, DEFAULT_PLAN, NAME_RE, Model, Name, PlanError, PositiveSeconds, Seconds
from .load import default_plan_path, load_plan, parse_plan
from .model import Plan
from .notify import Notify
from .rollout import Rollout, RolloutWebhook
from .sections import (
    Alertmanager,
    Analysis,
    Auth,
    Criteria,
    Demo,
    Endpoint,
    Learned,
    Phase,
    Probe,
    Prometheus,
    RateLimits,
    Retry,
    Target,
    Webhook,
)
from .traffic import TRAFFIC_KINDS, Traffic, min_requests
from .triggers import TRIGGER_KINDS, Trigger, TriggerKind

__all__ = [
    "ACTION_KINDS", "ALERT_RE", "DEFAULT_PLAN", "NAME_RE", "TRIGGER_KINDS", "Action", "Alertmanager",
    "Analysis", "Auth", "Command", "Criteria", "Demo", "DisableFeature", "Endpoint", "Http",
    "KubectlRollback", "Learned", "Model", "Name", "Notify", "Page", "Phase", "Plan", "PlanError",
    "PositiveSeconds",
    "Probe", "Prometheus", "RateLimits", "Retry", "Seconds", "Sequence", "Target", "Trigger",
    "TriggerKind", "Webhook", "default_plan_path", "load_plan", "parse_plan",
    "WEIGHT_KINDS", "WEIGHT_PLACEHOLDER", "DeploymentRatio", "HttpRouteWeight", "IngressNginxWeight",
    "Rollout", "RolloutWebhook", "WeightAction", "TRAFFIC_KINDS", "Traffic", "min_requests",
]
