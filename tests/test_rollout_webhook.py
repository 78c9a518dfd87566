"""A rollback by the webhook stops the rollout: the real webhook runs the real kubectl against the
fake API server, the rollout sees the run in the webhook's /api/actions, sets the weight to 0
and stops, without an undo of its own."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml
from canary_guard.rollout.watch import WebhookWatch
from conftest import CLI, Processes, free_port, need_binary
from kube_fake import FakeCluster, serve
from webhook_helpers import AUTH, alert, notification, plan_data

from canary_guard.plan import parse_plan

NS = "recoveryos"
ROLE = [
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["recoveryos"],
     "verbs": ["get", "patch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
]


def test_a_webhook_rollback_stops_the_rollout_with_one_undo(tmp_path):
    kubectl = need_binary("kubectl")
    cluster = FakeCluster(NS, "recoveryos", ROLE)
    cluster.add({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "recoveryos-canary"}, "spec": {}})
    server, api = serve(cluster)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": api}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}]}))
    wport, rport = free_port(), free_port()
    webhook = f"http://127.0.0.1:{wport}"
    data = plan_data()
    data["actions"]["rollback"]["kubectl"] = kubectl
    data["rollout"] = {"weight": {"kind": "ingress_nginx_weight", "ingress": "recoveryos-canary",
                                  "namespace": NS, "kubectl": kubectl},
                       "rollback": "rollback", "watch_interval": "1s",
                       # reads of /api/* need a credential: Alertmanager's token may read
                       "webhook": {"url": webhook, "token_env": "CANARY_GUARD_WEBHOOK_TOKEN"}}
    parse_plan(data)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path), "CANARY_GUARD_WEBHOOK_TOKEN": AUTH[
        "Authorization"].removeprefix("Bearer ")}
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path / "logs")
    nowhere = f"http://127.0.0.1:{free_port()}"  # no Prometheus: reported, stops nothing
    try:
        procs.start([*CLI, "webhook", "--plan", str(plan_file), "--listen", f"127.0.0.1:{wport}", "--db",
                     str(tmp_path / "webhook.db")], "webhook", ready_url=f"{webhook}/healthz", env=env,
                    timeout=30)
        rollout = procs.start([*CLI, "rollout", "run", "--plan", str(plan_file), "--prometheus", nowhere,
                               "--state-dir", str(tmp_path / "state"), "--listen", f"127.0.0.1:{rport}",
                               "--time-scale", "0.01"], "rollout", ready_url=f"http://127.0.0.1:{rport}/healthz",
                              env=env, timeout=30)
        control = f"http://127.0.0.1:{rport}"
        deadline = time.monotonic() + 60
        while httpx.get(f"{control}/status", timeout=10).json()["step"] != "wait":
            assert time.monotonic() < deadline, procs.log("rollout")
            time.sleep(0.1)
        time.sleep(1.5)  # a look or two at the webhook, which has run nothing yet
        assert rollout.poll() is None
        doc = httpx.get(f"{control}/status", timeout=10).json()
        assert any("Prometheus" in e for e in doc["watch_errors"]), doc["watch_errors"]

        resp = httpx.post(f"{webhook}/alerts", json=notification(alert()), headers=AUTH, timeout=10)
        assert resp.status_code == 200, resp.text
        assert rollout.wait(timeout=60) == 3, procs.log("rollout")
    finally:
        procs.stop_all()
        server.shutdown()
    weights = [p["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
               for res, _, _, p in cluster.changes if res == "ingresses"]
    assert weights == ["5", "0"]
    assert len(cluster.patches) == 1  # the webhook's undo; the rollout added none
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["status"] == "stopped" and state["weight"] == 0
    assert state["rollback"]["source"] == "webhook"
    assert "the webhook ran rollback" in state["rollback"]["reason"]
    audit = (tmp_path / "state" / "audit.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in audit]
    assert "watch_errors" in events and "webhook_rollback_seen" in events
    assert "rollback_action_start" not in events


@pytest.mark.e2e
def test_a_firing_rollback_alert_in_prometheus_is_seen(tmp_path):
    """The other source: ALERTS in a real Prometheus. A firing alert whose action rolls back is
    seen; a pending one, or one that only pages, is not."""
    prometheus = need_binary("prometheus")
    (tmp_path / "logs").mkdir()
    rules = {"groups": [{"name": "t", "interval": "1s", "rules": [
        {"alert": "CanaryErrorRateHigh", "expr": "vector(1)",
         "labels": {"action": "rollback", "track": "canary", "endpoint": "edge_ai"}},
        {"alert": "CanaryLatencyHigh", "expr": "vector(1)", "labels": {"action": "page", "track": "canary"}},
        {"alert": "CanaryPIIExposure", "expr": "vector(1)", "for": "1h",
         "labels": {"action": "emergency_rollback", "track": "canary"}},
    ]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(
        {"global": {"evaluation_interval": "1s"}, "rule_files": [str(tmp_path / "rules.yml")]}))
    port = free_port()
    prom = f"http://127.0.0.1:{port}"
    procs = Processes(tmp_path / "logs")
    data = plan_data()
    data["rollout"] = {"weight": {"kind": "command", "argv": ["true"]}, "rollback": "rollback"}
    plan = parse_plan(data)
    try:
        procs.start([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                     f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                    "prometheus", ready_url=f"{prom}/-/ready", timeout=60)
        watch = WebhookWatch(plan, prom)
        deadline = time.monotonic() + 60
        seen = None
        while seen is None and time.monotonic() < deadline:
            seen = watch.look(0)
            time.sleep(0.5)
        assert seen is not None and seen.source == "alerts", watch.errors
        expected = "CanaryErrorRateHigh is firing (track=canary, endpoint=edge_ai) with action rollback"
        assert expected in seen.detail
        # the emergency rollback is only pending (for: 1h), the page is no rollback
        alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        states = {a["labels"]["alertname"]: a["state"] for a in alerts}
        assert states == {"CanaryErrorRateHigh": "firing", "CanaryLatencyHigh": "firing",
                          "CanaryPIIExposure": "pending"}
        only_page = parse_plan({**data, "triggers": [t for t in data["triggers"] if t["action"] == "page"],
                                "actions": {k: v for k, v in data["actions"].items() if k == "page"},
                                "rollout": {"weight": {"kind": "command", "argv": ["true"]}}})
        assert WebhookWatch(only_page, prom).look(0) is None
        assert WebhookWatch(plan.model_copy(update={"rollout": plan.rollout.model_copy(
            update={"watch_alerts": False})}), prom).look(0) is None
        # and this Prometheus holds no probe data at all: gate serve holds, with a non-2xx status
        from canary_guard.gate.serve import create_app

        resp = create_app(plan, prom).test_client().get("/gate?phase=1")
        assert resp.status_code == 503 and resp.get_json()["decision"] == "hold"
        assert {c["verdict"] for c in resp.get_json()["criteria"]} == {"insufficient"}
    finally:
        procs.stop_all()
