"""The Flagger and Argo Rollouts renders: valid against the projects' CRD schemas (offline, see
tests/crds/README.md), derived from the plan, and pointing at a gate serve that answers them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from crd_schema import problems

from canary_guard.cli import build_parser
from canary_guard.plan import load_plan, parse_plan

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))
import render  # noqa: E402  (deploy/render.py is a script, not a package)

CANARY = "flagger-canary.schema.yaml"
TEMPLATE = "argo-analysistemplate.schema.yaml"


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def plan():
    return load_plan()


def test_the_checked_in_renders_validate_against_the_crd_schemas():
    (canary,) = docs((ROOT / "deploy" / "flagger" / "canary.yaml").read_text())
    assert problems(canary, CANARY) == []
    (template,) = docs((ROOT / "deploy" / "argo-rollouts" / "analysistemplate.yaml").read_text())
    assert problems(template, TEMPLATE) == []


def test_the_validator_catches_what_the_api_server_would_refuse_or_drop():
    (canary,) = docs(render.flagger_canary(load_plan()))
    canary["spec"]["analysis"]["interval"] = "24h"  # Flagger takes minutes or seconds only
    canary["spec"]["analysis"]["webhooks"][0]["tyep"] = "rollout"
    canary["spec"]["analysis"]["webhooks"][1]["type"] = "rollbak"
    del canary["spec"]["targetRef"]
    found = problems(canary, CANARY)
    assert any(p.startswith("spec.analysis.interval: '24h' does not match") for p in found), found
    assert any("'tyep' was unexpected" in p for p in found), found
    assert any(p.startswith("spec.analysis.webhooks.1.type: 'rollbak' is not one of") for p in found), found
    assert any("'targetRef' is a required property" in p for p in found), found
    (template,) = docs(render.argo_analysis_template(load_plan()))
    template["spec"]["metrics"][0]["provider"]["web"]["timeoutSeconds"] = "60"
    template["spec"]["metrics"][0]["provider"]["web"]["jsonpath"] = "{$}"
    del template["spec"]["metrics"][0]["provider"]["web"]["url"]
    found = problems(template, TEMPLATE)
    assert any("timeoutSeconds: '60' is not of type 'integer'" in p for p in found), found
    assert any("'jsonpath' was unexpected" in p for p in found), found
    assert any("'url' is a required property" in p for p in found), found


def test_flagger_canary_follows_the_plan(plan):
    (canary,) = docs(render.flagger_canary(plan))
    spec = canary["spec"]
    assert canary["metadata"] == {"name": "recoveryos", "namespace": "recoveryos",
                                  "labels": {"app.kubernetes.io/part-of": "canary-guard"}}
    assert spec["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "recoveryos"}
    assert spec["analysis"]["stepWeights"] == [5, 10, 25, 50]  # then promotion to 100%
    assert spec["analysis"]["interval"] == "1440m"  # a day per phase
    assert spec["provider"] == "nginx" and spec["ingressRef"]["name"] == "recoveryos"
    hooks = {h["type"]: h for h in spec["analysis"]["webhooks"]}
    assert set(hooks) == {"rollout", "rollback", "confirm-promotion"}
    gate = "http://canary-guard-gate.canary-guard.svc:9114"
    assert hooks["confirm-promotion"]["url"] == f"{gate}/flagger/confirm-promotion"
    assert hooks["rollback"]["url"] == f"{gate}/flagger/rollback"
    assert hooks["rollout"]["url"] == f"{gate}/flagger/check"
    assert all(h["metadata"] == {"phase": "4"} for h in hooks.values())  # the last phase before 100%


def test_flagger_canary_for_a_gateway_api_plan_and_short_phases(plan):
    data = yaml.safe_load(plan.to_yaml())
    data["phases"] = [{"name": "one", "traffic_percent": 20, "duration": "90s"},
                      {"name": "two", "traffic_percent": 60, "duration": "30m"},
                      {"name": "all", "traffic_percent": 100}]
    data["rollout"] = {"weight": {"kind": "httproute_weight", "route": "r", "namespace": "recoveryos",
                                  "canary_backend": "c", "stable_backend": "s"}}
    other = parse_plan(data)
    (canary,) = docs(render.flagger_canary(other))
    assert problems(canary, CANARY) == []
    assert canary["spec"]["provider"] == "gatewayapi:v1" and "ingressRef" not in canary["spec"]
    assert canary["spec"]["analysis"]["interval"] == "90s"
    assert canary["spec"]["analysis"]["stepWeights"] == [20, 60]
    (steps,) = docs(render.argo_rollout_steps(other))
    assert steps["steps"][:3] == [{"setWeight": 20}, {"pause": {"duration": "90s"}},
                                  {"analysis": {"templates": [{"templateName": "canary-guard-gate"}],
                                                "args": [{"name": "phase", "value": "1"}]}}]
    assert steps["steps"][4] == {"pause": {"duration": "30m"}}
    assert steps["steps"][-1] == {"setWeight": 100}


def test_argo_template_asks_the_gate_for_the_phase_of_its_step(plan):
    (template,) = docs(render.argo_analysis_template(plan))
    (metric,) = template["spec"]["metrics"]
    assert template["spec"]["args"] == [{"name": "phase"}]
    assert metric["provider"]["web"]["url"] == \
        "http://canary-guard-gate.canary-guard.svc:9114/argo?phase={{args.phase}}"
    assert metric["successCondition"] == "result.decision == 'promote'"
    assert metric["failureCondition"] == "result.decision == 'rollback'"
    # a hold is neither: inconclusive, and with no inconclusive allowed the Rollout pauses
    assert (metric["count"], metric["failureLimit"], metric["inconclusiveLimit"]) == (1, 0, 0)
    (steps,) = docs(render.argo_rollout_steps(plan))
    weights = [s["setWeight"] for s in steps["steps"] if "setWeight" in s]
    assert weights == [5, 10, 25, 50, 100]
    pauses = [s["pause"]["duration"] for s in steps["steps"] if "pause" in s]
    assert pauses == ["24h"] * 4
    phases = [s["analysis"]["args"][0]["value"] for s in steps["steps"] if "analysis" in s]
    assert phases == ["1", "2", "3", "4"]


def test_the_gate_deployment_serves_what_the_renders_call():
    base = docs((ROOT / "deploy" / "kubernetes" / "base" / "gate.yaml").read_text())
    dep = next(d for d in base if d["kind"] == "Deployment")
    svc = next(d for d in base if d["kind"] == "Service")
    meta, port = svc["metadata"], svc["spec"]["ports"][0]["port"]
    assert f"http://{meta['name']}.{meta['namespace']}.svc:{port}" == render.GATE_URL
    args = build_parser().parse_args(dep["spec"]["template"]["spec"]["containers"][0]["args"])
    assert args.command == "gate" and args.mode == "serve" and args.listen == "0.0.0.0:9114"


# -- the rollout's Role: exactly what its kubectl calls need, proven with the real kubectl -------

def _weight_plan(plan, weight: dict):
    data = yaml.safe_load(plan.to_yaml())
    data["rollout"] = {**data["rollout"], "weight": weight}
    return parse_plan(data)


KINDS = {
    "ingress_nginx_weight": {"kind": "ingress_nginx_weight", "ingress": "recoveryos-canary",
                             "namespace": "recoveryos"},
    "httproute_weight": {"kind": "httproute_weight", "route": "recoveryos", "namespace": "recoveryos",
                         "canary_backend": "recoveryos-canary", "stable_backend": "recoveryos-stable"},
    "deployment_ratio": {"kind": "deployment_ratio", "canary": "recoveryos-canary",
                         "stable": "recoveryos-stable", "namespace": "recoveryos", "replicas": 4},
}


def _cluster(rules, tmp_path, monkeypatch):
    from kube_fake import FakeCluster, serve

    cluster = FakeCluster("recoveryos", "recoveryos", rules)
    cluster.add({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "recoveryos-canary"}, "spec": {}})
    cluster.add({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                 "metadata": {"name": "recoveryos"},
                 "spec": {"rules": [{"backendRefs": [{"name": "recoveryos-stable", "port": 8000},
                                                     {"name": "recoveryos-canary", "port": 8000}]}]}})
    for name in ("recoveryos-canary", "recoveryos-stable"):
        cluster.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                     "spec": {"replicas": 2}})
    server, url = serve(cluster)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "rollout", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "rollout"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("HOME", str(tmp_path))
    return cluster, server


def _run(plan, rules, tmp_path, monkeypatch):
    from canary_guard.rollout.actions import run_action
    from canary_guard.rollout.weights import apply_weight

    cluster, server = _cluster(rules, tmp_path, monkeypatch)
    try:
        weight = apply_weight(plan.rollout.weight, 25, previous=10)
        undo = run_action(plan, plan.rollout.rollback, reason="test")
    finally:
        server.shutdown()
    return weight, undo, cluster


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_rendered_rollout_role_is_exactly_enough(plan, kind, tmp_path, monkeypatch):
    from conftest import need_binary

    need_binary("kubectl")
    p = _weight_plan(plan, KINDS[kind])
    (rules,) = render.rollout_rules(p).values()
    for rule in rules:
        assert "*" not in str(rule) and set(rule["verbs"]) <= {"get", "patch", "list"}, rule
        assert rule.get("resourceNames") or rule["resources"] == ["replicasets"], rule  # names are hashes
    weight, undo, cluster = _run(p, rules, tmp_path, monkeypatch)
    assert weight.ok, weight.detail
    assert [r.ok for r in undo] == [True], undo
    assert cluster.denied == [] and len(cluster.patches) == 1
    # every granted verb is needed: without it, the weight change or the undo is refused
    for i, rule in enumerate(rules):
        for verb in rule["verbs"]:
            fewer = [dict(r, verbs=[v for v in r["verbs"] if v != verb]) if j == i else r
                     for j, r in enumerate(rules)]
            weight, undo, cluster = _run(p, [r for r in fewer if r["verbs"]], tmp_path, monkeypatch)
            assert not (weight.ok and all(r.ok for r in undo)), (rule["resources"], verb)
            assert cluster.denied, (rule["resources"], verb)


def test_the_rollout_role_is_in_the_kustomize_base():
    (text,) = [(ROOT / "deploy" / "kubernetes" / "base" / "rollout-rbac.yaml").read_text()]
    objs = docs(text)
    assert [o["kind"] for o in objs] == ["ServiceAccount", "Role", "RoleBinding"]
    assert objs[1]["rules"] == render.rollout_rules(load_plan())["recoveryos"]
    assert "rollout-rbac.yaml" in (ROOT / "deploy" / "kubernetes" / "base" / "kustomization.yaml").read_text()
