"""Done when (issue 13): two Alertmanagers in a cluster and two webhook replicas on a real
PostgreSQL. A fault gives exactly one rollback; ``kill -9`` of the replica that is running the
action leaves exactly one rollback and a clear record.

Lean on purpose: the alerts are posted to both Alertmanagers the way Prometheus does (to every
instance, again every evaluation), so no Prometheus, exporter or service is needed. Each
Alertmanager notifies a different replica, so even a duplicate that got past their gossip
would land on the other replica: only the database can keep the rollback single.
"""

from __future__ import annotations

import shutil
import signal
import time
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from conftest import free_port, need_binary
from webhook_helpers import (
    TOKEN,
    actions,
    install_kubectl,
    kubectl_calls,
    kubectl_env,
    plan_data,
    start_webhook,
    wait_for,
    write_plan,
)

pytestmark = pytest.mark.e2e

ROLLBACK_ARGV = ["rollout", "undo", "deployment/recoveryos", "-n", "recoveryos"]


def alertmanager_config(tmp_path, name: str, webhook_url: str) -> str:
    token = tmp_path / "am-token"
    token.write_text(TOKEN)
    config = {
        "route": {"receiver": "canary-guard-webhook",
                  "group_by": ["alertname", "track", "endpoint", "action"],
                  "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "canary-guard-webhook", "webhook_configs": [{
            "url": f"{webhook_url}/alerts", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token)}}}]}],
    }
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def start_alertmanagers(procs, tmp_path, webhooks: list[str]) -> list[str]:
    binary = need_binary("prometheus-alertmanager")
    ports = [(free_port(), free_port()) for _ in webhooks]
    urls = []
    for i, (web, gossip) in enumerate(ports):
        peers = [f"--cluster.peer=127.0.0.1:{g}" for j, (_, g) in enumerate(ports) if j != i]
        data = tmp_path / f"am{i}-data"
        data.mkdir()
        url = f"http://127.0.0.1:{web}"
        procs.start([binary, f"--config.file={alertmanager_config(tmp_path, f'am{i}', webhooks[i])}",
                     f"--storage.path={data}", f"--web.listen-address=127.0.0.1:{web}",
                     f"--cluster.listen-address=127.0.0.1:{gossip}",
                     f"--cluster.advertise-address=127.0.0.1:{gossip}", *peers,
                     "--cluster.settle-timeout=10s", "--cluster.pushpull-interval=2s"],
                    f"alertmanager{i}", ready_url=f"{url}/-/ready", timeout=30)
        urls.append(url)

    def clustered():
        return all(len(httpx.get(f"{u}/api/v2/status", timeout=5).json()["cluster"].get("peers") or []) == 2
                   for u in urls)
    wait_for(clustered, timeout=30, what="the two Alertmanagers to see each other")
    return urls


def fire(alertmanagers: list[str], alertname: str, endpoint: str, action: str, starts_at: str) -> None:
    """What Prometheus does each evaluation: send the firing alert to every Alertmanager."""
    alert = [{"labels": {"alertname": alertname, "action": action, "track": "canary", "endpoint": endpoint,
                         "severity": "critical", "trigger": alertname},
              "annotations": {"summary": f"{alertname} on {endpoint}"},
              "startsAt": starts_at, "generatorURL": "http://prometheus:9090/graph"}]
    for url in alertmanagers:
        httpx.post(f"{url}/api/v2/alerts", json=alert, timeout=10).raise_for_status()


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_two_alertmanagers_two_replicas_one_rollback_even_when_the_acting_replica_is_killed(
        procs, tmp_path, postgres_url):
    bindir, record = install_kubectl(tmp_path)
    hang = tmp_path / "hang"
    env = kubectl_env(bindir, record, KUBECTL_HANG_FILE=str(hang))
    data = plan_data()
    data["webhook"]["cooldown"] = "0s"  # two faults in a row here; the cooldown has its own tests
    plan = write_plan(tmp_path, data)
    replicas = {}
    for name in ("a", "b"):
        url, proc = start_webhook(procs, tmp_path, plan, postgres_url, "--lease", "3", env=env,
                                  name=f"webhook-{name}")
        replicas[url] = proc
    urls = list(replicas)
    ids = {url: httpx.get(f"{url}/healthz", timeout=5).json()["replica"] for url in urls}
    alertmanagers = start_alertmanagers(procs, tmp_path, urls)

    # 1. A fault: the alert fires on both Alertmanagers, over and over: exactly one rollback.
    starts = now_rfc3339()
    for _ in range(4):
        fire(alertmanagers, "CanaryErrorRateHigh", "edge_ai", "rollback", starts)
        time.sleep(1)
    wait_for(lambda: [r for r in actions(urls[0]) if r["status"] == "succeeded"], timeout=30,
             what="the rollback to run")
    time.sleep(3)  # any late duplicate would have acted by now
    assert kubectl_calls(record) == [ROLLBACK_ARGV]
    runs = actions(urls[1])  # both replicas read the same record
    assert [(r["action"], r["status"]) for r in runs] == [("rollback", "succeeded")]
    assert runs == actions(urls[0])
    assert runs[0]["replica"] in ids.values()

    # 2. Another fault, and the replica running its rollback is killed mid-kubectl.
    hang.write_text("30")
    starts = now_rfc3339()
    fire(alertmanagers, "CanaryPIIExposure", "graph_neural", "rollback", starts)

    def running():
        found = [r for r in actions(urls[0]) if r["status"] == "running" and r["attempts"]]
        return found[0] if found and len(kubectl_calls(record)) == 2 else None
    run = wait_for(running, timeout=30, what="the second rollback to be running kubectl")
    victim = next(url for url in urls if ids[url] == run["replica"])
    survivor = next(url for url in urls if url != victim)
    hang.unlink()
    procs.stop(replicas[victim], signal.SIGKILL)
    fire(alertmanagers, "CanaryPIIExposure", "graph_neural", "rollback", starts)  # still firing

    def settled():
        r = next(x for x in actions(survivor) if x["id"] == run["id"])
        return r if r["status"] not in ("queued", "running") else None
    taken = wait_for(settled, timeout=30, what="the survivor to take the run over")
    time.sleep(2)
    # exactly one rollback each: the interrupted undo is not done again
    assert kubectl_calls(record) == [ROLLBACK_ARGV, ROLLBACK_ARGV]
    # and a clear record: who ran it, that it was taken over, that kubectl was cut off, a page
    assert taken["status"] == "needs_review" and taken["taken_over"] == 1
    assert taken["replica"] == ids[survivor]
    assert [(a["action"], a["outcome"]) for a in taken["attempts"]] == [("rollback", "interrupted")]
    assert "not safe to repeat" in taken["attempts"][0]["detail"]
    page = wait_for(lambda: [r for r in actions(survivor) if r["escalated_from"] == run["id"]
                             and r["status"] == "succeeded"], timeout=20, what="the page")
    assert page[0]["action"] == "page"
    rollbacks = [r for r in actions(survivor) if r["action"] == "rollback"]
    assert len(rollbacks) == 2  # one run per fault, whatever the Alertmanagers and replicas did
    health = httpx.get(f"{survivor}/healthz", timeout=5).json()
    assert health["needs_review"] == 1


@pytest.fixture(autouse=True)
def _no_stray_alertmanager_data(tmp_path):
    yield
    for path in tmp_path.glob("am*-data"):
        shutil.rmtree(path, ignore_errors=True)
