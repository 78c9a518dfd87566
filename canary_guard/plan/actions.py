"""The actions the webhook (and the rollout) can run: each a small model, told apart by ``kind``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field

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
