"""The actions the webhook (and the rollout) can run: each a small model, told apart by ``kind``.

Two families: ``Action`` (what an alert or a rollback decision runs: the plan's ``actions``)
and ``WeightAction`` (how the rollout sets the canary's share of traffic: the plan's
``rollout.weight``). Weight actions are never plan ``actions``, so no alert can name one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, model_validator

from .base import K8sName, K8sNamespace, Model, Name, PositiveSeconds


class KubectlRollback(Model):
    kind: Literal["kubectl_rollback"]
    deployment: K8sName
    namespace: K8sNamespace = "default"
    context: str | None = None
    to_revision: int | None = Field(default=None, ge=1)
    kubectl: str = "kubectl"  # a name found on PATH, or an absolute path
    timeout: PositiveSeconds = 60.0


class DisableFeature(Model):
    kind: Literal["disable_feature"]
    url: str  # the service's base URL
    path: str = "/elite/config/disable"
    # "alert": the feature of the alert's endpoint (mapped through the plan's endpoints);
    # "all": every endpoint's feature; or an explicit list of features.
    features: Literal["alert", "all"] | list[Name] = "alert"
    timeout: PositiveSeconds = 10.0


class Page(Model):
    kind: Literal["page"]
    url: str | None = None  # optional notification endpoint to POST the incident to
    timeout: PositiveSeconds = 10.0


class Command(Model):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    timeout: PositiveSeconds = 60.0


class Http(Model):
    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: PositiveSeconds = 10.0


class Sequence(Model):
    kind: Literal["sequence"]
    steps: list[Name] = Field(min_length=1)


Action = Annotated[
    KubectlRollback | DisableFeature | Page | Command | Http | Sequence,
    Field(discriminator="kind"),
]


ACTION_KINDS: tuple[str, ...] = tuple(
    get_args(m.model_fields["kind"].annotation)[0] for m in get_args(get_args(Action)[0])
)


# -- weight actions: set the canary's share of traffic (the rollout's ``weight``) -------------

WEIGHT_PLACEHOLDER = "{weight}"  # replaced by the weight (a whole percent) in command/http


class _Kubectl(Model):
    namespace: K8sNamespace = "default"
    context: str | None = Field(default=None, pattern=r"^[^-\s][^\s]*$")
    kubectl: str = "kubectl"  # a name found on PATH, or an absolute path
    timeout: PositiveSeconds = 60.0


class IngressNginxWeight(_Kubectl):
    """The canary Ingress's ``nginx.ingress.kubernetes.io/canary-weight`` annotation."""

    kind: Literal["ingress_nginx_weight"]
    ingress: K8sName  # the canary Ingress (the one annotated nginx.ingress.kubernetes.io/canary)


class HttpRouteWeight(_Kubectl):
    """Gateway API: the weights of an HTTPRoute's two backendRefs (canary W, stable 100 - W)."""

    kind: Literal["httproute_weight"]
    route: K8sName
    canary_backend: K8sName  # backendRefs[].name of the canary Service
    stable_backend: K8sName
    rule: int | None = Field(default=None, ge=0)  # one rule's index; None: every rule with both

    @model_validator(mode="after")
    def _distinct(self) -> HttpRouteWeight:
        if self.canary_backend == self.stable_backend:
            raise ValueError("canary_backend and stable_backend must differ")
        return self


class DeploymentRatio(_Kubectl):
    """Traffic by replica count: two plain Deployments behind one Service, ``replicas`` pods
    in all, the canary's share rounded up so that any weight above 0 runs at least one pod."""

    kind: Literal["deployment_ratio"]
    canary: K8sName
    stable: K8sName
    replicas: int = Field(ge=1, le=10_000)

    @model_validator(mode="after")
    def _distinct(self) -> DeploymentRatio:
        if self.canary == self.stable:
            raise ValueError("canary and stable must be two different Deployments")
        return self


WeightAction = Annotated[
    IngressNginxWeight | HttpRouteWeight | DeploymentRatio | Command | Http,
    Field(discriminator="kind"),
]

WEIGHT_KINDS: tuple[str, ...] = tuple(
    get_args(m.model_fields["kind"].annotation)[0] for m in get_args(get_args(WeightAction)[0])
)
