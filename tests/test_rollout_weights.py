"""Weight actions with the real kubectl against the fake API server (RBAC enforced), and the
command/http kinds with the weight passed as an argv element or a JSON number."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from canary_guard.rollout.weights import apply_weight, http_body, httproute_patch, replica_split
from conftest import need_binary
from kube_fake import FakeCluster, serve

from canary_guard.plan import Command, DeploymentRatio, Http, HttpRouteWeight, IngressNginxWeight

NS = "recoveryos"
# What each kind needs, and nothing more: kubectl patch GETs the object first; kubectl scale
# GETs the Deployment and PATCHes its scale subresource.
ROLE = [
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "resourceNames": ["recoveryos-canary"],
     "verbs": ["get", "patch"]},
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "resourceNames": ["recoveryos"],
     "verbs": ["get", "patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["rc", "rs"], "verbs": ["get"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": ["rc", "rs"],
     "verbs": ["patch"]},
]
ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "recoveryos"},
         "spec": {"parentRefs": [{"name": "public"}], "rules": [
             {"matches": [{"path": {"type": "PathPrefix", "value": "/elite"}}],
              "backendRefs": [{"name": "recoveryos-stable", "port": 8000, "weight": 100},
                              {"name": "recoveryos-canary", "port": 8000, "weight": 0}]},
             {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
              "backendRefs": [{"name": "recoveryos-stable", "port": 8000}]}]}}


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    need_binary("kubectl")
    c = FakeCluster(NS, "recoveryos", ROLE)
    c.add({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "recoveryos-canary",
                        "annotations": {"nginx.ingress.kubernetes.io/canary": "true"}},
           "spec": {"rules": [{"host": "api.example"}]}})
    c.add(ROUTE)
    for name, replicas in (("rc", 0), ("rs", 10)):
        c.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
               "spec": {"replicas": replicas}})
    server, url = serve(c)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "rollout", "user": {"token": "service-account-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "rollout"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("HOME", str(tmp_path))
    try:
        yield c
    finally:
        server.shutdown()


def test_ingress_nginx_canary_weight(cluster):
    spec = IngressNginxWeight(kind="ingress_nginx_weight", ingress="recoveryos-canary", namespace=NS)
    for weight in (5, 10, 25, 50, 100, 0):
        done = apply_weight(spec, weight)
        assert done.ok, done.detail
        notes = cluster.get("ingresses", "recoveryos-canary")["metadata"]["annotations"]
        assert notes == {"nginx.ingress.kubernetes.io/canary": "true",
                         "nginx.ingress.kubernetes.io/canary-weight": str(weight)}
    assert cluster.denied == []
    assert {(v, r) for v, r, _ in cluster.requests} == {("get", "ingresses"), ("patch", "ingresses")}
    assert all("merge-patch" in ct for _, _, ct, _ in cluster.changes)
    assert cluster.get("ingresses", "recoveryos-canary")["spec"] == {"rules": [{"host": "api.example"}]}


def test_ingress_that_the_role_does_not_cover_fails_with_the_reason(cluster):
    spec = IngressNginxWeight(kind="ingress_nginx_weight", ingress="other-canary", namespace=NS)
    done = apply_weight(spec, 5)
    assert not done.ok and "forbidden" in done.detail.lower()
    assert cluster.changes == []


def test_httproute_backend_weights(cluster):
    spec = HttpRouteWeight(kind="httproute_weight", route="recoveryos", namespace=NS,
                           canary_backend="recoveryos-canary", stable_backend="recoveryos-stable")
    done = apply_weight(spec, 25)
    assert done.ok, done.detail
    rules = cluster.get("httproutes", "recoveryos")["spec"]["rules"]
    assert rules[0]["backendRefs"] == [{"name": "recoveryos-stable", "port": 8000, "weight": 75},
                                       {"name": "recoveryos-canary", "port": 8000, "weight": 25}]
    assert rules[1] == ROUTE["spec"]["rules"][1]  # a rule without the canary is left alone
    assert rules[0]["matches"] == ROUTE["spec"]["rules"][0]["matches"]
    (_, _, content_type, patch), = cluster.changes
    assert "json-patch" in content_type and [op["op"] for op in patch] == ["test", "add", "test", "add"]
    assert apply_weight(spec, 100).ok
    refs = cluster.get("httproutes", "recoveryos")["spec"]["rules"][0]["backendRefs"]
    assert [r["weight"] for r in refs] == [0, 100]


def test_httproute_edited_in_between_is_refused_not_patched_in_the_wrong_place():
    spec = HttpRouteWeight(kind="httproute_weight", route="r", canary_backend="c", stable_backend="s")
    route = {"spec": {"rules": [{"backendRefs": [{"name": "s"}, {"name": "c"}]}]}}
    ops = httproute_patch(route, spec, 10)
    moved = {"spec": {"rules": [{"backendRefs": [{"name": "c"}, {"name": "s"}]}]}}
    from kube_fake import PatchFailed, json_patch

    with pytest.raises(PatchFailed, match="test failed"):
        json_patch(moved, ops)
    assert httproute_patch({"spec": {"rules": [{"backendRefs": [{"name": "s"}]}]}}, spec, 10) == []


def test_httproute_without_the_backends_names_them(cluster):
    spec = HttpRouteWeight(kind="httproute_weight", route="recoveryos", namespace=NS,
                           canary_backend="typo-canary", stable_backend="recoveryos-stable")
    done = apply_weight(spec, 5)
    assert not done.ok and "'typo-canary'" in done.detail and "rollout.weight" in done.detail
    assert cluster.changes == []


def test_replica_ratio_of_two_deployments(cluster):
    spec = DeploymentRatio(kind="deployment_ratio", canary="rc", stable="rs", namespace=NS, replicas=10)
    done = apply_weight(spec, 25, previous=10)
    assert done.ok, done.detail
    assert cluster.get("deployments", "rc")["spec"]["replicas"] == 3
    assert cluster.get("deployments", "rs")["spec"]["replicas"] == 7
    assert done.effective == 30  # 2.5 pods rounded up: the audit says what the canary really gets
    # growing the canary: canary first, so the total never drops below 10
    assert [name for res, name, _, _ in cluster.changes] == ["rc", "rs"]
    cluster.changes.clear()
    assert apply_weight(spec, 0, previous=25).ok
    assert [name for res, name, _, _ in cluster.changes] == ["rs", "rc"]  # shrinking: stable first
    assert cluster.get("deployments", "rc")["spec"]["replicas"] == 0
    assert cluster.get("deployments", "rs")["spec"]["replicas"] == 10
    assert cluster.denied == []


def test_replica_split_rounds_the_canary_up():
    assert replica_split(10, 5) == (1, 9)
    assert replica_split(10, 0) == (0, 10)
    assert replica_split(10, 100) == (10, 0)
    assert replica_split(4, 50) == (2, 2)
    assert replica_split(3, 10) == (1, 2)
    assert replica_split(20, 5) == (1, 19)


def test_a_failed_scale_stops_before_the_second_deployment(cluster):
    spec = DeploymentRatio(kind="deployment_ratio", canary="rc", stable="rs", namespace=NS, replicas=10)
    cluster.fail_next[("deployments", "rc")] = 100
    done = apply_weight(spec, 50, previous=25)
    assert not done.ok and len(done.steps) == 1
    assert cluster.get("deployments", "rs")["spec"]["replicas"] == 10


def test_command_gets_the_weight_as_an_argv_element_and_in_its_environment(tmp_path):
    out = tmp_path / "out.json"
    script = ("import json, os, sys; json.dump({'argv': sys.argv[1:], "
              "'env': os.environ['CANARY_GUARD_WEIGHT'], "
              f"'phase': os.environ['CANARY_GUARD_PHASE']}}, open({str(out)!r}, 'w'))")
    spec = Command(kind="command",
                   argv=[sys.executable, "-c", script, "--weight={weight}", "{weight}", "$(id)"])
    done = apply_weight(spec, 25, phase="phase_3")
    assert done.ok, done.detail
    assert json.loads(out.read_text()) == {"argv": ["--weight=25", "25", "$(id)"], "env": "25",
                                           "phase": "phase_3"}
    failing = Command(kind="command", argv=[sys.executable, "-c", "import sys; sys.exit(4)"])
    assert not apply_weight(failing, 5).ok


def test_http_gets_the_weight_as_a_json_number():
    assert http_body(None, 25) == {"weight": 25}
    assert http_body({"service": "recoveryos"}, 5) == {"service": "recoveryos", "weight": 5}
    assert http_body({"split": {"canary": "{weight}"}, "note": "x{weight}"}, 10) == \
        {"split": {"canary": 10}, "note": "x{weight}"}
    assert http_body([{"w": "{weight}"}], 2.5) == [{"w": 2.5}]

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "body": body,
                             "auth": self.headers.get("X-Team")})
            self.send_response(204 if len(received) == 1 else 500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/traffic"
        spec = Http(kind="http", method="PUT", url=url, body={"canary": "{weight}"},
                    headers={"X-Team": "sre"})
        assert apply_weight(spec, 50).ok
        second = apply_weight(spec, 100)
        assert not second.ok and "HTTP 500" in second.detail
    finally:
        server.shutdown()
    assert received[0] == {"path": "/traffic", "body": {"canary": 50}, "auth": "sre"}


def test_kubectl_not_found_is_named(tmp_path):
    spec = IngressNginxWeight(kind="ingress_nginx_weight", ingress="x", kubectl=str(tmp_path / "nope"))
    done = apply_weight(spec, 5)
    assert not done.ok and "not found" in done.detail and "rollout.weight.kubectl" in done.detail


def test_the_plan_refuses_names_that_kubectl_would_read_as_flags():
    from canary_guard.plan import PlanError, load_plan, parse_plan

    data = yaml.safe_load(load_plan().to_yaml())
    data["rollout"] = {"weight": {"kind": "deployment_ratio", "canary": "--all", "stable": "rs",
                                  "replicas": 0}}
    with pytest.raises(PlanError) as err:
        parse_plan(data)
    text = str(err.value)
    assert "rollout.weight.canary: '--all' is not a Kubernetes object name" in text
    assert "rollout.weight.replicas" in text
    data["rollout"] = {"weight": {"kind": "ingress_nginx_weight", "ingress": "c"}, "rollback": "nope"}
    data["phases"][1]["traffic_percent"] = 12.5
    with pytest.raises(PlanError) as err:
        parse_plan(data)
    assert err.value.problems == [
        "rollout.rollback: 'nope' is not defined in actions (defined: disable_all_features, disable_feature, "
        "emergency_rollback, page, rollback)",
        "phases[1].traffic_percent: 12.5 is not a whole percent; ingress_nginx_weight sets whole percents",
    ]


def test_docs_name_every_weight_kind():
    from canary_guard.plan import WEIGHT_KINDS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "rollout.md").read_text()
    for kind in WEIGHT_KINDS:
        assert f"`{kind}`" in doc, kind
