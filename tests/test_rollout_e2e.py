"""The rollout end to end, with every real part: the sandbox, the exporter, a real Prometheus,
the gate as a process, and the real kubectl against the fake API server (RBAC enforced).

Phases of an hour run at --time-scale 0.004 (14.4 s each); the exporter probes three endpoints
every 100 ms, so a 20 s gate window holds ~600 probes: enough to show the criteria (99% at 95%
confidence needs 299).

- A healthy canary: the ingress weight goes 5, 10, 25, 50, 100, each exactly once, in order,
  although the rollout is killed with SIGKILL in the middle of phase 3 and started again.
- A fault during phase 3: the gate shows the breach, the weight goes to 0, and the plan's
  rollback (kubectl rollout undo) runs exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import CLI, Processes, free_port, need_binary, start_sandbox
from kube_fake import FakeCluster, serve

from canary_guard.plan import load_plan, parse_plan

pytestmark = pytest.mark.e2e

NS = "recoveryos"
SCALE = 0.004
PHASE = 3600 * SCALE
ENDPOINTS = ("continual_learning", "edge_ai", "quantum_crypto")
ROLE = [  # what the weight action and `kubectl rollout undo` need
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "resourceNames": ["recoveryos-canary"],
     "verbs": ["get", "patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["recoveryos"],
     "verbs": ["get", "patch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
]


class Stack:
    def __init__(self, root: Path, procs: Processes, prom: str, sandbox: str, cluster: FakeCluster,
                 plan_file: Path, env: dict[str, str], scraped_port: int):
        self.root, self.procs, self.prom, self.sandbox = root, procs, prom, sandbox
        self.cluster, self.plan_file, self.env = cluster, plan_file, env
        self.scraped_port = scraped_port  # Prometheus scrapes a rollout's control port here

    def weights(self) -> list[int]:
        return [int(p["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"])
                for res, _, _, p in self.cluster.changes if res == "ingresses"]

    def start_rollout(self, state: Path, port: int, name: str):
        return self.procs.start(
            [*CLI, "--log-level", "debug", "rollout", "run", "--plan", str(self.plan_file),
             "--prometheus", self.prom, "--state-dir", str(state), "--listen", f"127.0.0.1:{port}",
             "--time-scale", str(SCALE)],
            name, ready_url=f"http://127.0.0.1:{port}/healthz", env=self.env, timeout=60)


def status(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/status", timeout=10).json()


def wait_until(cond, what: str, timeout: float, proc=None, log: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the rollout exited ({proc.returncode}) before {what}:\n{log}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prometheus, kubectl = need_binary("prometheus"), need_binary("kubectl")
    root = tmp_path_factory.mktemp("rollout-e2e")
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    cluster = FakeCluster(NS, "recoveryos", ROLE)
    cluster.add({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "recoveryos-canary",
                              "annotations": {"nginx.ingress.kubernetes.io/canary": "true"}}, "spec": {}})
    server, api = serve(cluster)
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": api}}],
        "users": [{"name": "rollout", "user": {"token": "service-account-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "rollout"}}]}))
    try:
        sandbox = start_sandbox(procs, "--no-access-log", env={"RECOVERYOS_API_KEY": ""})
        data = yaml.safe_load(load_plan().to_yaml())
        data["targets"] = [{"name": "canary", "url": sandbox, "guarded": True}]
        data["endpoints"] = [e for e in data["endpoints"] if e["name"] in ENDPOINTS]
        data["probe"].update({"interval": 0.1, "timeout": 1.0})
        data["prometheus"].update({"scrape_interval": 1.0, "evaluation_interval": 1.0})
        criteria = {"availability": 0.99, "avg_latency": 0.5, "error_rate": 0.01, "p95_latency": 0.5,
                    "p99_latency": 1.0, "window": 20.0}
        data["slos"] = criteria
        data["phases"] = [{"name": f"phase_{i + 1}", "traffic_percent": w, "duration": 3600,
                           "criteria": criteria} for i, w in enumerate((5, 10, 25, 50))]
        data["phases"].append({"name": "phase_5", "traffic_percent": 100, "criteria": criteria})
        data["actions"]["rollback"]["kubectl"] = kubectl
        data["rollout"] = {"weight": {"kind": "ingress_nginx_weight", "ingress": "recoveryos-canary",
                                      "namespace": NS, "kubectl": kubectl},
                           "rollback": "rollback", "gate_interval": "1m", "watch_interval": "15s"}
        data.pop("notify", None)  # nobody to tell here
        data["analysis"]["baseline"] = None  # one track: the criteria alone decide
        parse_plan(data)
        plan_file = root / "plan.yaml"
        plan_file.write_text(yaml.safe_dump(data, sort_keys=False))
        eport, rport = free_port(), free_port()
        procs.start([*CLI, "exporter", "--plan", str(plan_file), "--listen", f"127.0.0.1:{eport}"],
                    "exporter", ready_url=f"http://127.0.0.1:{eport}/healthz")
        (root / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "canary-guard",
                                "static_configs": [{"targets": [f"127.0.0.1:{eport}"]}]},
                               {"job_name": "canary-guard-rollout",
                                "static_configs": [{"targets": [f"127.0.0.1:{rport}"]}]}],
        }))
        pport = free_port()
        prom = f"http://127.0.0.1:{pport}"
        procs.start([prometheus, f"--config.file={root / 'prometheus.yml'}",
                     f"--storage.tsdb.path={root / 'tsdb'}", f"--web.listen-address=127.0.0.1:{pport}"],
                    "prometheus", ready_url=f"{prom}/-/ready", timeout=60)
        env = {"KUBECONFIG": str(kubeconfig), "HOME": str(root)}
        yield Stack(root, procs, prom, sandbox, cluster, plan_file, env, rport)
    finally:
        procs.stop_all()
        server.shutdown()


def test_a_healthy_rollout_applies_every_weight_once_in_order_even_across_a_kill_9(stack):
    state, port = stack.root / "healthy", stack.scraped_port
    first = stack.start_rollout(state, port, "rollout-1")
    # mid-phase 3: its weight is applied and it is waiting out its duration
    wait_until(lambda: (s := status(port))["phase_number"] == 3 and s["step"] == "wait", "phase 3",
               timeout=180, proc=first, log=stack.procs.log("rollout-1"))
    time.sleep(PHASE / 3)
    before = status(port)
    # `canary-guard status` shows the rollout, from Prometheus's scrape of its control port
    shown = subprocess.run([*CLI, "status", "--plan", str(stack.plan_file), "--prometheus", stack.prom,
                            "--once"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    line = "rollout: phase 3/5 phase_3, canary weight 25%, RUNNING; last gate decision promote"
    assert line in shown.stdout, shown.stdout
    assert stack.weights() == [5, 10, 25]
    stack.procs.stop(first, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    saved = json.loads((state / "state.json").read_text())
    assert (saved["phase"], saved["step"], saved["weight"]) == (2, "wait", 25)

    second = stack.start_rollout(state, port, "rollout-2")
    resumed = status(port)
    assert resumed["phase_number"] == 3 and resumed["phase_started"] == before["phase_started"]
    second.wait(timeout=240)
    log = stack.procs.log("rollout-2")
    assert second.returncode == 0, log
    assert stack.weights() == [5, 10, 25, 50, 100]  # phase 3's 25% was neither applied again nor skipped
    audit = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    events = [e["event"] for e in audit]
    assert events.count("promote") == 4 and events[-1] == "completed"
    resumed_note = next(e for e in audit if e["event"] == "resumed")
    assert resumed_note["phase"] == "phase_3" and "not applied again" in resumed_note["note"]
    # phase 3 ran its whole (scaled) hour from its original start, across the restart
    gate3 = next(e for e in audit if e["event"] == "gate" and e["phase"] == "phase_3")
    assert gate3["ts"] - before["phase_started"] >= PHASE - 0.5
    # each phase promoted once, in order; a busy machine may probe too little for the first
    # window to show a criterion: that is a hold (never a promote) until it does, and nothing else
    gates = [e for e in audit if e["event"] == "gate"]
    assert [e["phase"] for e in gates if e["decision"] == "promote"] == \
        ["phase_1", "phase_2", "phase_3", "phase_4"], [(e["phase"], e.get("reasons")) for e in gates]
    for hold in (e for e in gates if e["decision"] != "promote"):
        assert hold["decision"] == "hold", hold
        assert hold["reasons"] and all("not shown" in r for r in hold["reasons"]), hold
    assert stack.cluster.patches == []  # no rollback


def test_a_fault_in_phase_3_sets_the_weight_to_0_and_rolls_back_once(stack):
    stack.cluster.changes.clear()
    state, port = stack.root / "faulty", free_port()
    proc = stack.start_rollout(state, port, "rollout-fault")
    try:
        wait_until(lambda: (s := status(port))["phase_number"] == 3 and s["step"] == "wait", "phase 3",
                   timeout=180, proc=proc, log=stack.procs.log("rollout-fault"))
        httpx.post(f"{stack.sandbox}/-/faults", json={"endpoint": "edge_ai", "mode": "error", "rate": 1.0},
                   timeout=10).raise_for_status()
        proc.wait(timeout=120)
    finally:
        httpx.delete(f"{stack.sandbox}/-/faults", timeout=10)
    log = stack.procs.log("rollout-fault")
    assert proc.returncode == 3, log
    assert stack.weights() == [5, 10, 25, 0]
    assert len(stack.cluster.patches) == 1  # exactly one `kubectl rollout undo`
    template = next(op for op in stack.cluster.patches[0] if op["path"] == "/spec/template")["value"]
    assert template["spec"]["containers"][0]["image"] == "recoveryos:1.9"
    final = json.loads((state / "state.json").read_text())
    assert final["status"] == "rolled_back" and final["weight"] == 0
    assert final["rollback"]["phase"] == "phase_3" and final["rollback"]["action_ok"] is True
    assert "error_rate breached" in final["rollback"]["reason"]
