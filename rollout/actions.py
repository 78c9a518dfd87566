"""Running the plan's rollback action after a rollback decision of the gate.

The webhook's action code is not importable from here (components never import each other),
so the rollout runs the plan's action kinds itself, the same way: argv lists, never a shell,
and a timeout. There is no alert here, so nothing from an alert reaches a command; a
``disable_feature`` action with ``features: alert`` has no alert to take its feature from and
disables every feature of the plan instead (the whole canary is being rolled back).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from canary_guard.plan import (
    Action,
    Auth,
    Command,
    DisableFeature,
    Http,
    KubectlRollback,
    Page,
    Plan,
    Sequence,
)
from canary_guard.process import find_executable, run_argv

HTTP_BODY_LIMIT = 500


@dataclass(frozen=True, slots=True)
class StepResult:
    action: str
    ok: bool
    detail: str


def run_action(plan: Plan, name: str, *, reason: str, client: httpx.Client | None = None) -> list[StepResult]:
    """Run the plan action ``name`` (each step of a sequence, in order, stopping at a failure)."""
    spec = plan.actions[name]
    steps = [(s, plan.actions[s]) for s in spec.steps] if isinstance(spec, Sequence) else [(name, spec)]
    own = client is None
    client = client or httpx.Client(follow_redirects=False)
    out: list[StepResult] = []
    try:
        for step_name, step in steps:
            result = _run(plan, step_name, step, reason, client)
            out.append(result)
            if not result.ok:
                break
    finally:
        if own:
            client.close()
    return out


def _run(plan: Plan, name: str, spec: Action, reason: str, client: httpx.Client) -> StepResult:
    if isinstance(spec, KubectlRollback):
        exe = find_executable(spec.kubectl)
        if exe is None:
            return StepResult(name, False, f"{spec.kubectl!r} not found (on PATH or as an executable path)")
        argv = [exe, "rollout", "undo", f"deployment/{spec.deployment}", "-n", spec.namespace]
        if spec.context:
            argv += ["--context", spec.context]
        if spec.to_revision:
            argv += ["--to-revision", str(spec.to_revision)]
        done = run_argv(argv, spec.timeout)
        return StepResult(name, done.ok, f"{' '.join(argv[1:])}: {done.detail}")
    if isinstance(spec, Command):
        done = run_argv(list(spec.argv), spec.timeout, {"CANARY_GUARD_ACTION": name})
        return StepResult(name, done.ok, f"{spec.argv[0]}: {done.detail}")
    if isinstance(spec, Http):
        return _http(name, client, spec.method, spec.url, spec.body, dict(spec.headers), spec.timeout)
    if isinstance(spec, DisableFeature):
        features = spec.features if isinstance(spec.features, list) else plan.features()
        w = plan.webhook
        auth = Auth(header=plan.auth.header, scheme=plan.auth.scheme, token_env=w.service_token_env,
                    token_file=w.service_token_file)
        url = spec.url.rstrip("/") + spec.path
        return _http(name, client, "POST", url, {"features": features}, auth.headers(), spec.timeout)
    if isinstance(spec, Page):
        body = {"source": "canary-guard rollout", "plan": plan.name, "action": name, "reason": reason}
        if spec.url:
            return _http(name, client, "POST", spec.url, body, {}, spec.timeout)
        return StepResult(name, True, f"page recorded: {reason}")
    return StepResult(name, False, f"cannot run a {getattr(spec, 'kind', '?')} action")


def _http(name: str, client: httpx.Client, method: str, url: str, body: object, headers: dict[str, str],
          timeout: float) -> StepResult:
    try:
        resp = client.request(method, url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as err:
        return StepResult(name, False, f"{method} {url}: {type(err).__name__}: {err}")
    text = resp.text[:HTTP_BODY_LIMIT].strip()
    return StepResult(name, resp.is_success, f"{method} {url} -> HTTP {resp.status_code}"
                      + (f": {text}" if text else ""))
