"""Setting the canary's share of traffic: one function per kind of weight action.

Every kind sets an absolute weight (a whole percent for the Kubernetes kinds), so applying the
same weight twice changes nothing: after a crash in the middle of applying a weight the rollout
applies it again. The weight reaches a command as an argv element (``{weight}``) and an
environment variable, and an HTTP endpoint as a JSON number: never through a shell.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import httpx

from canary_guard.plan import (
    WEIGHT_PLACEHOLDER,
    Command,
    DeploymentRatio,
    Http,
    HttpRouteWeight,
    IngressNginxWeight,
    WeightAction,
)
from canary_guard.process import find_executable, run_argv

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"
HTTPROUTE = "httproutes.gateway.networking.k8s.io"

KubectlWeight = IngressNginxWeight | HttpRouteWeight | DeploymentRatio
HTTP_BODY_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Applied:
    ok: bool
    weight: float  # the weight asked for
    effective: float | None  # the share the canary really gets (replica ratios round), if known
    detail: str  # what was run and what it answered, for the audit trail
    steps: tuple[str, ...] = ()  # each command or request, in order


def apply_weight(spec: WeightAction, weight: float, previous: float | None = None, *, phase: str = "",
                 client: httpx.Client | None = None) -> Applied:
    """Set the canary's weight (0-100) with the plan's weight action; never raises for a failure."""
    if isinstance(spec, IngressNginxWeight):
        return _ingress(spec, weight)
    if isinstance(spec, HttpRouteWeight):
        return _httproute(spec, weight)
    if isinstance(spec, DeploymentRatio):
        return _replicas(spec, weight, previous)
    if isinstance(spec, Command):
        return _command(spec, weight, phase)
    if isinstance(spec, Http):
        return _http(spec, weight, client)
    raise TypeError(f"not a weight action: {spec!r}")


# -- Kubernetes ---------------------------------------------------------------------------------


def kubectl_argv(spec: KubectlWeight, *args: str) -> list[str] | None:
    exe = find_executable(spec.kubectl)
    if exe is None:
        return None
    argv = [exe, *args, "-n", spec.namespace]
    if spec.context:
        argv += ["--context", spec.context]
    return argv


def _not_found(spec: KubectlWeight, weight: float) -> Applied:
    return Applied(False, weight, None, f"{spec.kubectl!r} not found (on PATH or as an executable path); "
                   "install kubectl or set rollout.weight.kubectl")


def _ingress(spec: IngressNginxWeight, weight: float) -> Applied:
    # One merge patch sets both annotations: the Ingress is a canary, with this weight.
    patch = {"metadata": {"annotations": {CANARY_ANNOTATION: "true", WEIGHT_ANNOTATION: str(int(weight))}}}
    argv = kubectl_argv(spec, "patch", "ingress", spec.ingress, "--type", "merge", "-p", json.dumps(patch))
    if argv is None:
        return _not_found(spec, weight)
    done = run_argv(argv, spec.timeout)
    return Applied(done.ok, weight, weight if done.ok else None,
                   f"ingress {spec.namespace}/{spec.ingress} canary-weight={int(weight)}: {done.detail}",
                   (" ".join(argv[1:]),))


def httproute_patch(route: dict, spec: HttpRouteWeight, weight: float) -> list[dict]:
    """JSON patch setting the two backends' weights, each guarded by a ``test`` of the backend's
    name, so that a route edited in between is refused rather than patched in the wrong place."""
    ops: list[dict] = []
    rules = route.get("spec", {}).get("rules") or []
    wanted = {spec.canary_backend: int(weight), spec.stable_backend: 100 - int(weight)}
    for i, rule in enumerate(rules):
        if spec.rule is not None and i != spec.rule:
            continue
        refs = rule.get("backendRefs") or []
        names = [ref.get("name") for ref in refs]
        if not set(wanted) <= set(names):
            continue
        for j, ref in enumerate(refs):
            if ref.get("name") in wanted:
                base = f"/spec/rules/{i}/backendRefs/{j}"
                ops.append({"op": "test", "path": f"{base}/name", "value": ref["name"]})
                ops.append({"op": "add", "path": f"{base}/weight", "value": wanted[ref["name"]]})
    return ops


def _httproute(spec: HttpRouteWeight, weight: float) -> Applied:
    get = kubectl_argv(spec, "get", HTTPROUTE, spec.route, "-o", "json")
    if get is None:
        return _not_found(spec, weight)
    steps = [" ".join(get[1:])]
    where = f"httproute {spec.namespace}/{spec.route}"
    done = run_argv(get, spec.timeout)
    if not done.ok:
        return Applied(False, weight, None, f"{where}: {done.detail}", tuple(steps))
    try:
        route = json.loads(done.stdout)
    except ValueError:
        return Applied(False, weight, None, f"{where}: kubectl get did not print JSON", tuple(steps))
    ops = httproute_patch(route, spec, weight)
    if not ops:
        which = f"rule {spec.rule}" if spec.rule is not None else "no rule"
        return Applied(False, weight, None,
                       f"{where}: {which} has backendRefs named {spec.canary_backend!r} and "
                       f"{spec.stable_backend!r}; check rollout.weight", tuple(steps))
    patch = kubectl_argv(spec, "patch", HTTPROUTE, spec.route, "--type", "json", "-p", json.dumps(ops))
    if patch is None:  # kubectl vanished between the get and the patch
        return _not_found(spec, weight)
    steps.append(" ".join(patch[1:]))
    done = run_argv(patch, spec.timeout)
    rules = len({op["path"].split("/")[3] for op in ops})
    return Applied(done.ok, weight, weight if done.ok else None,
                   f"{where}: {spec.canary_backend}={int(weight)} {spec.stable_backend}={100 - int(weight)} "
                   f"in {rules} rule(s): {done.detail}", tuple(steps))


def replica_split(total: int, weight: float) -> tuple[int, int]:
    """(canary, stable) pods for a weight: the canary's share rounded up, so any weight above
    zero runs at least one canary pod, and 100 runs no stable pod."""
    canary = min(total, math.ceil(round(total * weight / 100, 9))) if weight > 0 else 0
    return canary, total - canary


def _replicas(spec: DeploymentRatio, weight: float, previous: float | None) -> Applied:
    canary, stable = replica_split(spec.replicas, weight)
    # Grow before shrinking, so that the total never drops below the plan's replicas.
    order = [(spec.canary, canary), (spec.stable, stable)]
    if previous is not None and weight < previous:
        order.reverse()
    steps, details = [], []
    for name, count in order:
        argv = kubectl_argv(spec, "scale", f"deployment/{name}", f"--replicas={count}")
        if argv is None:
            return _not_found(spec, weight)
        steps.append(" ".join(argv[1:]))
        done = run_argv(argv, spec.timeout)
        details.append(f"{name}={count}: {done.detail}")
        if not done.ok:
            return Applied(False, weight, None, f"deployments in {spec.namespace}: " + "; ".join(details),
                           tuple(steps))
    effective = 100 * canary / spec.replicas
    return Applied(True, weight, effective,
                   f"deployments in {spec.namespace}: {canary} canary / {stable} stable pods "
                   f"({effective:g}% of {spec.replicas}): " + "; ".join(details), tuple(steps))


# -- anything else -------------------------------------------------------------------------------


def weight_text(weight: float) -> str:
    return str(int(weight)) if weight == int(weight) else f"{weight:g}"


def _command(spec: Command, weight: float, phase: str) -> Applied:
    text = weight_text(weight)
    argv = [a.replace(WEIGHT_PLACEHOLDER, text) for a in spec.argv]
    env = {"CANARY_GUARD_WEIGHT": text, "CANARY_GUARD_PHASE": phase}
    done = run_argv(argv, spec.timeout, env)
    return Applied(done.ok, weight, weight if done.ok else None, f"{argv[0]}: {done.detail}",
                   (" ".join(argv),))


def http_body(body: Any, weight: float) -> Any:
    """The plan's body with every ``"{weight}"`` replaced by the weight as a JSON number; a
    mapping without one gets a ``weight`` field, and no body becomes ``{"weight": W}``."""
    number = int(weight) if weight == int(weight) else weight

    def fill(value: Any) -> Any:
        if value == WEIGHT_PLACEHOLDER:
            return number
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    filled = fill(body)
    if filled == body and (body is None or isinstance(body, dict)):
        return {**(body or {}), "weight": number}
    return filled


def _http(spec: Http, weight: float, client: httpx.Client | None) -> Applied:
    body = http_body(spec.body, weight)
    own = client is None
    client = client or httpx.Client(follow_redirects=False)
    step = f"{spec.method} {spec.url} {json.dumps(body)}"
    try:
        resp = client.request(spec.method, spec.url, json=body, headers=spec.headers, timeout=spec.timeout)
    except httpx.HTTPError as err:
        return Applied(False, weight, None, f"{spec.method} {spec.url}: {type(err).__name__}: {err}", (step,))
    finally:
        if own:
            client.close()
    text = resp.text[:HTTP_BODY_LIMIT].strip()
    detail = f"{spec.method} {spec.url} -> HTTP {resp.status_code}" + (f": {text}" if text else "")
    return Applied(resp.is_success, weight, weight if resp.is_success else None, detail, (step,))
