"""The plan's actions as :class:`RollbackAction` implementations.

Every action works in two steps: ``prepare(alert)`` decides exactly what would be done (an
argv list, or a method + URL + body) from the plan alone, plus the plan's explicit mapping
from the alert's ``endpoint`` label to a feature name; ``execute(command)`` does it, with a
timeout. The prepared command is recorded before it runs (and is all that a dry run does).

Alert labels never reach an argv or a URL: the only label that is read is ``endpoint``, and
only as a key looked up in the plan's endpoints; a label naming no plan endpoint is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from canary_guard import process
from canary_guard.plan import (
    Auth,
    Command,
    DisableFeature,
    Http,
    KubectlRollback,
    Page,
    Plan,
    Sequence,
)

from . import redact
from .store.base import CHANGE, EMERGENCY, PAGE, ROLLBACK

HTTP_BODY_LIMIT = 500


class Refused(Exception):
    """The action cannot be prepared for this alert (e.g. its endpoint label names no plan endpoint)."""


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What an action may know about the run it serves."""

    run_id: int
    action: str  # the run's (top-level) action name
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    starts_at: str = ""
    reason: str = ""  # escalations: why a human is needed


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    outcome: str  # ok | recorded | failed | timeout | http_error | unreachable | not_found
    retryable: bool
    detail: str


@runtime_checkable
class RollbackAction(Protocol):
    # Read-only members: an action may hold them as fields or derive them from its spec.
    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def timeout(self) -> float: ...

    @property
    def idempotent(self) -> bool:
        """Safe to do again when a crash left it unknown whether it was done (disabling a
        feature twice is harmless; a second ``kubectl rollout undo`` re-deploys the bad revision)."""

    def cooldown_key(self) -> str | None:
        """What a cooldown protects (None: idempotent, no cooldown)."""

    def prepare(self, ctx: AlertContext) -> dict[str, Any]:
        """What would be done, as JSON-able data; raises Refused."""

    def execute(self, command: dict[str, Any], ctx: AlertContext) -> Outcome:
        """Do it once; never raises for an action failure."""


# -- process actions ------------------------------------------------------------------------


def run_argv(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> Outcome:
    """Run argv (never through a shell) with a timeout (canary_guard.process), its output masked."""
    done = process.run_argv(argv, timeout, env, scrub=lambda text: redact.text(text, limit=None))
    # Ran and failed, or ran out of time: another try may succeed. Could not start: it will not.
    outcome = done.outcome if done.started else "failed"
    return Outcome(done.ok, outcome, done.started and not done.ok, done.detail)


@dataclass
class KubectlRollbackAction:
    name: str
    spec: KubectlRollback
    kind: str = "kubectl_rollback"
    idempotent: bool = False

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    def cooldown_key(self) -> str | None:
        # Per deployment, whichever action rolls it back: a second undo re-deploys the bad revision.
        s = self.spec
        return f"kubectl_rollback:{s.context or ''}/{s.namespace}/deployment/{s.deployment}"

    def kubectl(self) -> str | None:
        return process.find_executable(self.spec.kubectl)

    def prepare(self, ctx: AlertContext) -> dict[str, Any]:
        s = self.spec
        argv = [self.kubectl() or s.kubectl, "rollout", "undo", f"deployment/{s.deployment}",
                "-n", s.namespace]
        if s.context:
            argv += ["--context", s.context]
        if s.to_revision:
            argv += ["--to-revision", str(s.to_revision)]
        return {"argv": argv, "timeout": s.timeout}

    def execute(self, command: dict[str, Any], ctx: AlertContext) -> Outcome:
        if self.kubectl() is None:
            return Outcome(False, "not_found", False,
                           f"{self.spec.kubectl!r} not found (on PATH or as an executable path); "
                           "install kubectl or set actions.<name>.kubectl")
        out = run_argv(command["argv"], self.spec.timeout)
        if not out.ok and out.outcome == "failed":
            # Errors kubectl cannot fix by retrying: missing deployment, RBAC.
            text = out.detail.lower()
            if "notfound" in text or "not found" in text or "forbidden" in text:
                return Outcome(False, "failed", False, out.detail)
        return out


@dataclass
class CommandAction:
    name: str
    spec: Command
    kind: str = "command"
    idempotent: bool = False  # nothing is known about what the command does

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    def cooldown_key(self) -> str | None:
        return f"command:{self.name}"

    def prepare(self, ctx: AlertContext) -> dict[str, Any]:
        return {"argv": list(self.spec.argv), "timeout": self.spec.timeout}

    def execute(self, command: dict[str, Any], ctx: AlertContext) -> Outcome:
        # Only values the webhook itself owns reach the environment, never alert labels.
        env = {"CANARY_GUARD_RUN_ID": str(ctx.run_id), "CANARY_GUARD_ACTION": self.name}
        return run_argv(command["argv"], self.spec.timeout, env)


# -- HTTP actions -----------------------------------------------------------------------------


def http_call(client: httpx.Client, method: str, url: str, body: Any, headers: dict[str, str],
              timeout: float, secrets: tuple[str, ...] = ()) -> Outcome:
    # The detail is recorded and shown: the URL redacted, the body cut and scrubbed (redact.py).
    shown = redact.url(url)
    try:
        resp = client.request(method, url, json=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException as err:
        return Outcome(False, "timeout", True,
                       f"{method} {shown}: timed out after {timeout:g}s ({_err(err, secrets)})")
    except httpx.HTTPError as err:
        return Outcome(False, "unreachable", True, f"{method} {shown}: {_err(err, secrets)}")
    text = redact.text(resp.text.strip(), (*secrets, *_header_values(headers)), limit=HTTP_BODY_LIMIT)
    detail = f"{method} {shown} -> HTTP {resp.status_code}" + (f": {text}" if text else "")
    if resp.is_success:
        return Outcome(True, "ok", False, detail)
    code = resp.status_code
    # A 4xx will not change on retry (404: the service lacks the route; 400, 401, 403...),
    # except timeouts and rate limiting.
    retryable = code >= 500 or code in (408, 425, 429)
    return Outcome(False, "http_error", retryable, detail)


def _header_values(headers: dict[str, str]) -> list[str]:
    out = []
    for v in headers.values():
        out.append(v)
        out += v.split(" ", 1)[1:]  # the credential of "Bearer <credential>"
    return out


def _err(err: Exception, secrets: tuple[str, ...] = ()) -> str:
    text = redact.text(str(err), secrets) if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@dataclass
class DisableFeatureAction:
    name: str
    spec: DisableFeature
    plan: Plan
    client: httpx.Client
    service_auth: Auth
    kind: str = "disable_feature"
    idempotent: bool = True

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    def cooldown_key(self) -> str | None:
        return None  # disabling a feature twice is harmless

    def url(self) -> str:
        return self.spec.url.rstrip("/") + self.spec.path

    def features(self, ctx: AlertContext) -> list[str]:
        which = self.spec.features
        if which == "all":
            return self.plan.features()
        if isinstance(which, list):
            return list(which)
        label = ctx.labels.get("endpoint")
        if not label:
            raise Refused("the alert has no endpoint label, so no feature can be chosen "
                          f"(action {self.name!r} disables the alert's endpoint's feature)")
        endpoint = self.plan.endpoint(label)
        if endpoint is None:
            raise Refused(f"the alert's endpoint label names no endpoint of the plan "
                          f"({_clip(label)!r}); refusing to guess a feature")
        if not endpoint.feature:
            raise Refused(f"plan endpoint {endpoint.name!r} has no feature to disable")
        return [endpoint.feature]

    def prepare(self, ctx: AlertContext) -> dict[str, Any]:
        url = redact.url(self.url())
        return {"method": "POST", "url": url, "body": {"features": self.features(ctx)},
                "timeout": self.spec.timeout}

    def execute(self, command: dict[str, Any], ctx: AlertContext) -> Outcome:
        headers = self.service_auth.headers()  # read at run time: rotation needs no restart
        # the URL from the plan, not the recorded command (which is redacted)
        return http_call(self.client, "POST", self.url(), command["body"], headers,
                         self.spec.timeout)


@dataclass
class HttpAction:
    name: str
    spec: Http
    client: httpx.Client
    kind: str = "http"

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    @property
    def idempotent(self) -> bool:
        return self.spec.method in ("GET", "PUT", "DELETE")  # idempotent by HTTP's definition

    def cooldown_key(self) -> str | None:
        return f"http:{self.name}"

    def prepare(self, ctx: AlertContext) -> dict[str, Any]:
        return {"method": self.spec.method, "url": redact.url(self.spec.url),
                "body": redact.value(self.spec.body),
                "headers": sorted(self.spec.headers), "timeout": self.spec.timeout}

    def execute(self, command: dict[str, Any], ctx: AlertContext) -> Outcome:
        return http_call(self.client, self.spec.method, self.spec.url, self.spec.body,
                         dict(self.spec.headers), self.spec.timeout)


@dataclass
class PageAction:
    name: str
    spec: Page
    client: httpx.Client
    kind: str = "page"
    idempotent: bool = True  # a second page beats none

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    def cooldown_key(self) -> str | None:
        return None  # a human must always hear about it

    def prepare(self, ctx: AlertContext) -> dict[str, Any]:
        message = {
            "run_id": ctx.run_id, "action": ctx.action,
            "reason": ctx.reason or ctx.annotations.get("summary", ""),
            "alert": {"labels": ctx.labels, "annotations": ctx.annotations,
                      "fingerprint": ctx.fingerprint, "startsAt": ctx.starts_at},
        }
        if self.spec.url:
            return {"method": "POST", "url": redact.url(self.spec.url), "body": message,
                    "timeout": self.spec.timeout}
        return {"record": message}

    def execute(self, command: dict[str, Any], ctx: AlertContext) -> Outcome:
        if "url" not in command or not self.spec.url:
            return Outcome(True, "recorded", False,
                           "recorded for manual review (no page url configured): see / and /api/actions")
        return http_call(self.client, "POST", self.spec.url, command["body"], {}, self.spec.timeout)


# Each action class is a RollbackAction: mypy checks this assignment, the tests check it at run
# time (tests/test_webhook_actions.py).
ACTION_CLASSES: tuple[type[RollbackAction], ...] = (
    KubectlRollbackAction, CommandAction, DisableFeatureAction, HttpAction, PageAction)


# -- the plan's actions -----------------------------------------------------------------------


class ActionSet:
    """Every plan action, sequences expanded into their steps."""

    def __init__(self, plan: Plan, client: httpx.Client | None = None):
        self.plan = plan
        self.client = client or httpx.Client(follow_redirects=False)
        w = plan.webhook
        self.service_auth = Auth(header=plan.auth.header, scheme=plan.auth.scheme,
                                 token_env=w.service_token_env, token_file=w.service_token_file)
        self.leaves: dict[str, RollbackAction] = {}
        for name, spec in plan.actions.items():
            if not isinstance(spec, Sequence):
                self.leaves[name] = self._build(name, spec)
        # Escalations page: the plan's "page" action, its first page action, or a built-in
        # one that records the page (visible on / and in /api/actions).
        pages = [n for n, s in plan.actions.items() if isinstance(s, Page)]
        self.escalation = "page" if "page" in pages else (pages[0] if pages else "page")
        if self.escalation not in self.leaves:
            self.leaves[self.escalation] = PageAction(self.escalation, Page(kind="page"), self.client)

    def _build(self, name: str, spec: Any) -> RollbackAction:
        if isinstance(spec, KubectlRollback):
            return KubectlRollbackAction(name, spec)
        if isinstance(spec, DisableFeature):
            return DisableFeatureAction(name, spec, self.plan, self.client, self.service_auth)
        if isinstance(spec, Page):
            return PageAction(name, spec, self.client)
        if isinstance(spec, Command):
            return CommandAction(name, spec)
        if isinstance(spec, Http):
            return HttpAction(name, spec, self.client)
        raise TypeError(f"unknown action kind for {name}: {spec!r}")

    def names(self) -> list[str]:
        return list(self.plan.actions)

    def known(self, name: str) -> bool:
        return name in self.plan.actions or name == self.escalation

    def steps(self, name: str) -> list[RollbackAction]:
        spec = self.plan.actions.get(name)
        if isinstance(spec, Sequence):
            return [self.leaves[step] for step in spec.steps]
        return [self.leaves[name]]

    def is_page(self, name: str) -> bool:
        return all(step.kind == "page" for step in self.steps(name))

    def priority(self, name: str) -> int:
        """How urgent a run of this action is (lower first): a rollback that does more
        (emergency_rollback: undo + disable every feature) before a plain rollback, before
        anything else that changes the service (feature disable, commands), before pages."""
        if name not in self.plan.actions and name != self.escalation:
            return PAGE
        kinds = {step.kind for step in self.steps(name)}
        if "kubectl_rollback" in kinds:
            return EMERGENCY if kinds - {"kubectl_rollback", "page"} else ROLLBACK
        return PAGE if kinds <= {"page"} else CHANGE

    def priorities(self) -> dict[str, int]:
        """Every plan action's priority, by name."""
        return {name: self.priority(name) for name in self.plan.actions}

    def close(self) -> None:
        self.client.close()


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def describe(command: dict[str, Any]) -> str:
    """One line for humans: the argv, or METHOD URL body."""
    if "argv" in command:
        return " ".join(command["argv"])
    if "url" in command:
        return f"{command['method']} {command['url']} {json.dumps(command.get('body'))}"
    return "record for manual review"
