"""deploy/kubernetes: `kubectl kustomize` renders, every object validates against the API schema
offline, the pods are locked down, references resolve, and the RBAC grants only what
`kubectl rollout undo` needs (checked by running the real kubectl against a fake API server)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import need_binary
from kube_fake import FakeCluster, serve
from kube_schema import validate

from canary_guard import contract
from canary_guard.cli import build_parser
from canary_guard.plan import KubectlRollback, load_plan

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"


def kustomize(path: Path) -> list[dict]:
    kubectl = need_binary("kubectl")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return kustomize(K8S)


@pytest.fixture(scope="module")
def overlay(tmp_path_factory) -> list[dict]:
    """The example overlay, with its *.env.example files copied to the git-ignored *.env."""
    tree = tmp_path_factory.mktemp("k8s") / "kubernetes"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("*.env"))
    example = tree / "overlays" / "example"
    for sample in example.glob("*.example"):
        shutil.copyfile(sample, example / sample.name.removesuffix(".example"))
    return kustomize(example)


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and
            (name is None or o["metadata"]["name"] == name or o["metadata"]["name"].startswith(name + "-"))]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def pod_spec(objs, name):
    return one(objs, "Deployment", name)["spec"]["template"]["spec"]


# -- schema ----------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["base", "overlay"])
def test_every_object_validates_against_the_api_schema(which, request):
    objs = request.getfixturevalue(which)
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
            "PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    if which == "overlay":
        assert {"Secret", "StatefulSet"} <= kinds
    problems = [p for o in objs for p in validate(o)]
    assert problems == []


def test_the_validator_catches_unknown_fields_and_bad_types(base):
    dep = yaml.safe_load(yaml.safe_dump(one(base, "Deployment", "canary-guard-webhook")))
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFs"] = True
    container["ports"][0]["containerPort"] = "9112"
    del container["name"]
    problems = validate(dep)
    assert any("readOnlyRootFs: unknown field" in p for p in problems)
    assert any("containerPort: expected int" in p for p in problems)
    assert any("`name`, must not be `None`" in p for p in problems)
    sm = yaml.safe_load(yaml.safe_dump(one(base, "ServiceMonitor", "canary-guard-exporter")))
    sm["spec"]["endpoints"][0]["honorlabels"] = True
    assert any("honorlabels: unknown field" in p for p in validate(sm))


# -- the pods --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["canary-guard-exporter", "canary-guard-webhook", "canary-guard-gate"])
def test_pods_are_locked_down(base, name):
    spec = pod_spec(base, name)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert set(c["resources"]["requests"]) == {"cpu", "memory"}
        assert set(c["resources"]["limits"]) == {"cpu", "memory"}
        port_names = {p["name"] for p in c["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["path"] == "/healthz"
            assert c[probe]["httpGet"]["port"] in port_names
        # a read-only root needs a writable /tmp
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}
        assert not any(v.get("hostPath") for v in spec["volumes"])


@pytest.mark.parametrize("name, command", [("canary-guard-exporter", "exporter"),
                                           ("canary-guard-webhook", "webhook"),
                                           ("canary-guard-gate", "gate")])
def test_container_args_are_accepted_by_the_real_cli(base, name, command):
    container = pod_spec(base, name)["containers"][0]
    assert container["args"][0] == command
    args = build_parser().parse_args(container["args"])  # exits on an unknown flag
    assert args.plan == "/etc/canary-guard/plan.yaml"
    host, _, port = args.listen.rpartition(":")
    assert host == "0.0.0.0"
    assert int(port) in {p["containerPort"] for p in container["ports"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/canary-guard"]["readOnly"] is True


def test_webhook_runs_two_replicas_on_postgresql_through_disruptions(base):
    dep = one(base, "Deployment", "canary-guard-webhook")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spec = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    container = spec["containers"][0]
    args = build_parser().parse_args(container["args"])
    env = {e["name"]: e for e in container["env"]}
    # the database URL (with its password) comes from a Secret, never from the args
    assert not any(a.startswith("--db") for a in container["args"])
    assert env["CANARY_GUARD_WEBHOOK_DB"]["valueFrom"]["secretKeyRef"] == {
        "name": "canary-guard-webhook-db", "key": "url"}
    assert args.command == "webhook"
    assert not find(base, "PersistentVolumeClaim")  # no state on the pods
    pdb = one(base, "PodDisruptionBudget", "canary-guard-webhook")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert spec["serviceAccountName"] == "canary-guard-webhook"
    assert find(base, "ServiceAccount", "canary-guard-webhook")
    # the exporter never needs the API
    assert pod_spec(base, "canary-guard-exporter")["automountServiceAccountToken"] is False


def test_webhook_database_url_from_the_overlay_secret_is_one_the_webhook_accepts(overlay):
    from canary_guard.webhook.store import is_postgres_url

    env = {e["name"]: e for e in pod_spec(overlay, "canary-guard-webhook")["containers"][0]["env"]}
    ref = env["CANARY_GUARD_WEBHOOK_DB"]["valueFrom"]["secretKeyRef"]
    secret = one(overlay, "Secret", "canary-guard-webhook-db")
    assert ref["name"] == secret["metadata"]["name"]
    url = __import__("base64").b64decode(secret["data"][ref["key"]]).decode()
    assert is_postgres_url(url) and "sslmode=require" in url


def test_alertmanager_is_a_two_instance_cluster_routing_to_the_webhook(overlay, tmp_path):
    sts = one(overlay, "StatefulSet", "alertmanager")
    assert sts["spec"]["replicas"] == 2
    headless = one(overlay, "Service", "alertmanager-cluster")
    assert headless["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == "alertmanager-cluster"
    ns = sts["metadata"]["namespace"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    peers = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--cluster.peer=")]
    # every pod of the StatefulSet, by its stable name behind the headless Service
    assert sorted(peers) == [f"alertmanager-{i}.alertmanager-cluster.{ns}.svc:9094" for i in range(2)]
    assert "--cluster.listen-address=0.0.0.0:9094" in container["args"]
    assert one(overlay, "PodDisruptionBudget", "alertmanager")["spec"]["minAvailable"] == 1
    # the configuration: the rendered one, valid for amtool, sending to the in-cluster webhook
    # with a token file that the mounted Secret provides
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    cm = one(overlay, "ConfigMap", "canary-guard-alertmanager")
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    config_file = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--config.file="))
    assert config_file == f"{mounts['config']}/alertmanager.yml"
    config = yaml.safe_load(cm["data"]["alertmanager.yml"])
    (hook,) = next(r for r in config["receivers"] if r["name"] == "canary-guard-webhook")["webhook_configs"]
    assert hook["url"] == "http://canary-guard-webhook.canary-guard.svc:9112/alerts"
    secret = one(overlay, "Secret", "canary-guard-alertmanager")
    assert volumes["secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
    files = [v for v in _walk_values(config) if isinstance(v, str) and v.startswith("/etc/alertmanager/")]
    assert files and all(f.startswith(mounts["secrets"] + "/") for f in files)
    assert {f.rsplit("/", 1)[1] for f in files} <= set(secret["data"])
    (tmp_path / "am.yml").write_text(cm["data"]["alertmanager.yml"])
    result = subprocess.run([need_binary("amtool"), "check-config", str(tmp_path / "am.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _walk_values(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_values(v)
    else:
        yield value


def test_env_names_are_the_plans_and_secrets_resolve(overlay):
    plan = load_plan()
    secrets = {s["metadata"]["name"]: s for s in find(overlay, "Secret")}
    expected = {
        "canary-guard-exporter": {plan.auth.token_env},
        "canary-guard-webhook": {plan.webhook.token_env, plan.webhook.service_token_env},
    }
    for name, env_names in expected.items():
        env = {e["name"]: e for e in pod_spec(overlay, name)["containers"][0]["env"]}
        assert env_names <= set(env)
        for e in env.values():
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:  # kustomize renamed the reference to the generated, hashed Secret
                assert ref["name"] in secrets, ref
                assert ref["key"] in secrets[ref["name"]]["data"], ref


def test_no_secret_values_are_committed():
    for path in K8S.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(path.read_text()):
                assert not (doc and doc.get("kind") == "Secret"), path
    example = K8S / "overlays" / "example"
    assert "*.env" in (example / ".gitignore").read_text().split()
    tracked = subprocess.run(["git", "ls-files", str(example)], cwd=ROOT, capture_output=True, text=True)
    assert not [f for f in tracked.stdout.split() if f.endswith(".env")]


def test_plan_configmap_is_mounted_and_holds_the_plan(base, overlay):
    for objs, source in ((base, BASE / "plan.yaml"), (overlay, K8S / "overlays" / "example" / "plan.yaml")):
        cm = one(objs, "ConfigMap", "canary-guard-plan")
        assert cm["metadata"]["name"] != "canary-guard-plan"  # hashed: a plan change rolls the pods
        assert cm["data"]["plan.yaml"] == source.read_text()
        for name in ("canary-guard-exporter", "canary-guard-webhook"):
            vols = {v["name"]: v for v in pod_spec(objs, name)["volumes"]}
            assert vols["plan"]["configMap"]["name"] == cm["metadata"]["name"]


def test_shipped_plan_copy_is_in_sync():
    shipped = ROOT / "canary_guard" / "plans" / "recoveryos.yaml"
    assert (BASE / "plan.yaml").read_text() == shipped.read_text()


def test_example_overlay_plan_uses_in_cluster_urls(overlay):
    cm = one(overlay, "ConfigMap", "canary-guard-plan")
    plan = yaml.safe_load(cm["data"]["plan.yaml"])
    assert all(".svc:" in t["url"] for t in plan["targets"])
    assert ".svc:" in plan["alertmanager"]["webhook_url"]
    images = {c["image"] for d in find(overlay, "Deployment")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"ghcr.io/canary-guard/canary-guard:0.1.0",
                      "ghcr.io/canary-guard/canary-guard-webhook:0.1.0"}


def test_services_and_servicemonitors_select_the_pods(base):
    plan = load_plan()
    for name in ("canary-guard-exporter", "canary-guard-webhook"):
        dep = one(base, "Deployment", name)
        svc = one(base, "Service", name)
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["metadata"]["namespace"] == dep["metadata"]["namespace"]
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        port_names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
        sm = one(base, "ServiceMonitor", name)
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
        ep = sm["spec"]["endpoints"][0]
        assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
    exporter = one(base, "ServiceMonitor", "canary-guard-exporter")["spec"]["endpoints"][0]
    # the rules select up{job="<plan job>"}; the exporter's `endpoint` label must survive
    job = {"action": "replace", "targetLabel": "job", "replacement": plan.prometheus.job}
    assert job in exporter["relabelings"]
    assert exporter["honorLabels"] is True
    assert exporter["interval"] == "15s"


def test_prometheusrule_is_the_rendered_one_and_passes_promtool(base, tmp_path):
    promtool = need_binary("promtool")
    rule = one(base, "PrometheusRule", "canary-guard")
    assert rule["metadata"]["namespace"] == "canary-guard"
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    own = {contract.ALERT_WEBHOOK_DOWN, contract.ALERT_WEBHOOK_ACTIONS_FAILING}  # rules/own.py
    assert alerts == {t.alert for t in load_plan().triggers} | own


def test_dashboard_configmap_for_the_grafana_sidecar(base):
    cm = one(base, "ConfigMap", "canary-guard-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"]["canary-guard-dashboard.json"] == (ROOT / "deploy" / "grafana" /
                                                         "canary-guard-dashboard.json").read_text()


# -- RBAC ------------------------------------------------------------------------------------

def test_rbac_grants_no_more_than_rollout_undo_needs(base):
    plan = load_plan()
    assert not find(base, "ClusterRole") and not find(base, "ClusterRoleBinding")
    rollbacks = [a for a in plan.actions.values() if isinstance(a, KubectlRollback)]
    roles = find(base, "Role", "canary-guard-rollback")  # the rollout's own: test_deploy_rollout.py
    assert {r["metadata"]["namespace"] for r in roles} == {a.namespace for a in rollbacks}
    for role in roles:
        ns = role["metadata"]["namespace"]
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (field, rule)
            assert rule["apiGroups"] == ["apps"]
            assert not set(rule["resources"]) & {"secrets", "pods", "pods/exec", "configmaps"}
            assert not set(rule["verbs"]) & {"create", "delete", "deletecollection", "update",
                                             "escalate", "bind", "impersonate", "watch"}
        grants = {(res, verb, tuple(rule.get("resourceNames", [])))
                  for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
        names = tuple(a.deployment for a in rollbacks if a.namespace == ns)
        assert grants == {("deployments", "get", names), ("deployments", "patch", names),
                          ("replicasets", "list", ())}
    for binding in find(base, "RoleBinding", "canary-guard-rollback"):
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "canary-guard-webhook",
                                        "namespace": "canary-guard"}]


def _undo(role_rules: list[dict], tmp_path: Path, namespace="recoveryos", deployment="recoveryos"):
    kubectl = need_binary("kubectl")
    cluster = FakeCluster(namespace, deployment, role_rules)
    server, url = serve(cluster)
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "webhook", "user": {"token": "service-account-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "webhook"}}],
        }))
        # the argv the webhook runs: kubectl rollout undo deployment/X -n NS
        result = subprocess.run(
            [kubectl, "rollout", "undo", f"deployment/{deployment}", "-n", namespace],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)},
        )
    finally:
        server.shutdown()
    return result, cluster


def test_real_kubectl_rollout_undo_succeeds_with_exactly_this_role(base, tmp_path):
    role = one(base, "Role", "canary-guard-rollback")
    result, cluster = _undo(role["rules"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rolled back" in result.stdout
    assert cluster.denied == []
    assert {(verb, res) for verb, res, _ in cluster.requests} == {
        ("get", "deployments"), ("list", "replicasets"), ("patch", "deployments")}
    # it restored revision 1's pod template
    (patch,) = cluster.patches
    template = next(op for op in patch if op["path"] == "/spec/template")["value"]
    assert template["spec"]["containers"][0]["image"] == "recoveryos:1.9"


@pytest.mark.parametrize("drop", [("deployments", "get"), ("deployments", "patch"), ("replicasets", "list")])
def test_every_granted_verb_is_needed(base, tmp_path, drop):
    role = one(base, "Role", "canary-guard-rollback")
    rules = []
    for rule in role["rules"]:
        verbs = [v for v in rule["verbs"] if (rule["resources"][0], v) != drop]
        if verbs:
            rules.append({**rule, "verbs": verbs})
    result, cluster = _undo(rules, tmp_path)
    assert result.returncode != 0
    assert "forbidden" in result.stderr.lower()
    assert cluster.patches == []


def test_the_role_is_restricted_to_the_plans_deployment(base, tmp_path):
    role = one(base, "Role", "canary-guard-rollback")
    result, cluster = _undo(role["rules"], tmp_path, deployment="some-other-app")
    assert result.returncode != 0
    assert ("get", "deployments", "some-other-app") in cluster.denied


def test_traffic_podmonitor_copies_the_track_from_a_pod_label(base):
    """The service's own request metrics: its pods in the plan's namespace, the track pod label
    copied into the series' track label (the canary and stable pods differ by nothing else),
    the service's own `endpoint` label kept, the plan's job name."""
    plan = load_plan()
    t = plan.traffic
    pm = one(base, "PodMonitor", f"{plan.service}-traffic")
    assert pm["metadata"]["namespace"] == "canary-guard"
    assert pm["spec"]["namespaceSelector"]["matchNames"] == [plan.actions["rollback"].namespace]
    assert pm["spec"]["selector"]["matchExpressions"] == [{"key": t.pod_label, "operator": "Exists"}]
    ep = pm["spec"]["podMetricsEndpoints"][0]
    assert ep["path"] == "/metrics" and ep["honorLabels"] is True and ep["targetPort"] == 8000
    meta = "__meta_kubernetes_pod_label_track"
    assert ep["relabelings"] == [
        {"action": "keep", "sourceLabels": [meta], "regex": "canary|stable"},
        {"action": "replace", "sourceLabels": [meta], "targetLabel": t.track_label},
        {"action": "replace", "targetLabel": "job", "replacement": t.job},
    ]


def test_webhook_people_side_is_wired_in_the_overlay(overlay, tmp_path):
    """Operators can sign in (users file and shared session key from a Secret), and a failed
    action escalates to every member of the Alertmanager cluster the overlay deploys."""
    import base64

    from canary_guard.webhook.auth import Users

    spec = pod_spec(overlay, "canary-guard-webhook")
    container = spec["containers"][0]
    args = build_parser().parse_args(container["args"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret = one(overlay, "Secret", "canary-guard-webhook-people")
    assert volumes["people"]["secret"]["secretName"] == secret["metadata"]["name"]
    for path in (args.users, args.session_key_file):
        directory, _, key = path.rpartition("/")
        assert directory == mounts["people"] and key in secret["data"], path
    # the example users file is a valid (empty) users file
    users = tmp_path / "users"
    users.write_bytes(base64.b64decode(secret["data"]["users"]))
    assert Users(str(users)).configured
    sts = one(overlay, "StatefulSet", "alertmanager")
    service, ns = sts["spec"]["serviceName"], sts["metadata"]["namespace"]
    port = next(p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]
                if p["name"] == "web")
    assert sorted(args.alertmanager) == [
        f"http://{sts['metadata']['name']}-{i}.{service}.{ns}.svc:{port}"
        for i in range(sts["spec"]["replicas"])]
    assert args.external_url.startswith("https://")
