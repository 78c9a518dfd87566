"""The webhook over real HTTP: started as ``canary-guard webhook`` on loopback, restarted, killed."""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
from conftest import CLI, start_sandbox
from webhook_helpers import (
    AUTH,
    TOKEN,
    actions,
    alert,
    install_kubectl,
    kubectl_calls,
    kubectl_env,
    metric,
    notification,
    plan_data,
    post,
    settled,
    start_webhook,
    wait_for,
    write_plan,
)

ROLLBACK_ARGV = ["rollout", "undo", "deployment/recoveryos", "-n", "recoveryos"]


def _webhook(procs, tmp_path, data=None, *extra, env=None, name="webhook", db=None, **kw):
    bindir, record = install_kubectl(tmp_path)
    plan = write_plan(tmp_path, data or plan_data())
    url, proc = start_webhook(procs, tmp_path, plan, db or tmp_path / "webhook.db", *extra,
                              env={**kubectl_env(bindir, record), **(env or {})}, name=name, **kw)
    return url, proc, record


def test_refuses_to_start_without_a_token(tmp_path):
    result = subprocess.run(
        [*CLI, "webhook", "--listen", "127.0.0.1:1", "--db", str(tmp_path / "w.db")],
        env={"PATH": "/usr/bin:/bin", "CANARY_GUARD_WEBHOOK_TOKEN": ""}, capture_output=True,
        text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "CANARY_GUARD_WEBHOOK_TOKEN" in result.stderr and "--insecure-no-auth" in result.stderr
    assert not (tmp_path / "w.db").exists()


def test_token_file_and_insecure_flag(procs, tmp_path):
    (tmp_path / "token").write_text("from-a-file\n")
    url, _, _ = _webhook(procs, tmp_path, plan_data(token_file=str(tmp_path / "token")), token=None)
    assert post(url, notification(), headers={"Authorization": "Bearer from-a-file"}).status_code == 200
    assert post(url, notification()).status_code == 401

    insecure, _, _ = _webhook(procs, tmp_path, None, "--insecure-no-auth", token=None, name="insecure",
                              db=tmp_path / "insecure.db")
    assert httpx.post(f"{insecure}/alerts", json=notification(alert(action="page"))).status_code == 200
    assert "authentication is DISABLED" in procs.log("insecure")


def test_auth_and_every_bad_input_over_http(procs, tmp_path):
    url, _, record = _webhook(procs, tmp_path)
    good = notification()
    basic = "Basic " + base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()

    assert post(url, good, headers={"Authorization": ""}).status_code == 401
    assert post(url, good, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert post(url, good, headers={"Authorization": "Basic " + base64.b64encode(b"u:nope").decode()}
                ).status_code == 401
    r = post(url, good, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    big = b'{"alerts": ["' + b"x" * (1 << 20) + b'"]}'
    r = post(url, big)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    r = post(url, iter([big]))  # chunked: no Content-Length to refuse early
    assert r.status_code == 413
    r = post(url, b'{"status": "firing", "alerts": [')
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    r = post(url, {"status": "firing", "alerts": [{"status": "firing"}]})
    assert r.status_code == 400 and r.json()["detail"].startswith("alerts[0].labels")
    assert httpx.get(f"{url}/alerts").status_code == 405

    assert actions(url) == []
    assert httpx.get(f"{url}/healthz").json()["notifications"] == 0
    assert metric(url, "canary_guard_webhook_rejected_total", reason="unauthorized") == 3

    assert post(url, good).status_code == 200
    assert post(url, notification(alert(fingerprint="other", action="page")),
                headers={"Authorization": basic}).status_code == 200
    settled(url, 2)
    assert kubectl_calls(record) == [ROLLBACK_ARGV]


def test_firing_alert_runs_argv_resolved_runs_nothing(procs, tmp_path):
    url, _, record = _webhook(procs, tmp_path)
    r = post(url, notification(alert(status="resolved", fingerprint="r1")))
    assert r.status_code == 200 and r.json()["alerts"][0]["run"] is None
    r = post(url, notification(alert(fingerprint="f1")))
    assert r.json()["alerts"][0]["run_status"] == "queued"
    (run,) = settled(url, 1)
    assert run["status"] == "succeeded" and run["incident"]["fingerprint"] == "f1"
    assert kubectl_calls(record) == [ROLLBACK_ARGV]
    post(url, notification(alert(fingerprint="f1", status="resolved")))
    assert len(actions(url)) == 1 and len(kubectl_calls(record)) == 1
    assert metric(url, "canary_guard_webhook_actions_total", action="rollback", outcome="succeeded") == 1


def test_feature_flags_reach_the_simulated_service(procs, tmp_path):
    key = "sandbox-api-key-1"
    service = start_sandbox(procs, env={"RECOVERYOS_API_KEY": key})
    url, _, record = _webhook(procs, tmp_path, plan_data(service), env={"RECOVERYOS_API_KEY": key})

    post(url, notification(alert(action="disable_feature", endpoint="graph_neural", fingerprint="g")))
    (run,) = settled(url, 1)
    assert run["status"] == "succeeded", run
    assert run["attempts"][0]["command"]["body"] == {"features": ["graph_neural_networks"]}
    status = httpx.get(f"{service}/elite/system-status", headers={"Authorization": f"Bearer {key}"}).json()
    disabled = sorted(n for n, f in status["features"].items() if not f["enabled"])
    assert disabled == ["graph_neural_networks"]

    post(url, notification(alert(action="emergency_rollback", alertname="CanaryPIIExposure",
                                 fingerprint="p")))
    settled(url, 2)
    status = httpx.get(f"{service}/elite/system-status", headers={"Authorization": f"Bearer {key}"}).json()
    assert all(not f["enabled"] for f in status["features"].values())
    assert kubectl_calls(record) == [ROLLBACK_ARGV]


def test_http_4xx_escalates_at_once(procs, tmp_path, sandbox):
    data = plan_data(sandbox)
    data["actions"]["disable_feature"]["path"] = "/elite/config/no-such-route"
    url, _, _ = _webhook(procs, tmp_path, data)
    post(url, notification(alert(action="disable_feature", endpoint="edge_ai")))
    runs = settled(url, 2)
    disable = next(r for r in runs if r["action"] == "disable_feature")
    page = next(r for r in runs if r["action"] == "page")
    assert disable["status"] == "failed"
    assert [(a["outcome"], a["retryable"]) for a in disable["attempts"]] == [("http_error", False)]
    assert "HTTP 404" in disable["attempts"][0]["detail"]
    assert page["escalated_from"] == disable["id"] and "cannot succeed on retry" in page["cause"]
    assert metric(url, "canary_guard_webhook_escalations_total", action="disable_feature") == 1


def test_fifty_concurrent_duplicates_give_one_rollback(procs, tmp_path):
    url, _, record = _webhook(procs, tmp_path)
    body = notification(alert(fingerprint="dup"))
    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda _: post(url, body).status_code, range(50)))
    assert codes == [200] * 50
    (run,) = settled(url, 1)
    assert run["status"] == "succeeded" and run["incident"]["deliveries"] == 50
    assert kubectl_calls(record) == [ROLLBACK_ARGV]
    assert metric(url, "canary_guard_webhook_duplicates_total") == 49
    assert metric(url, "canary_guard_webhook_notifications_total", status="firing") == 50


def test_duplicates_across_a_restart_give_one_rollback(procs, tmp_path):
    url, proc, record = _webhook(procs, tmp_path)
    body = notification(alert(fingerprint="restart"))
    post(url, body)
    settled(url, 1)
    assert procs.stop(proc) == 0  # SIGTERM: a clean stop
    url, _, record = _webhook(procs, tmp_path, name="webhook2")
    r = post(url, body)
    assert r.status_code == 200 and r.json()["alerts"][0]["duplicate"] is True
    # and a second incident for the deployment inside the cooldown is refused, after the restart too
    post(url, notification(alert(fingerprint="another", alertname="CanaryAvailabilityLow")))
    runs = settled(url, 2)
    assert [r["status"] for r in runs] == ["cooldown", "succeeded"]
    assert kubectl_calls(record) == [ROLLBACK_ARGV]
    assert metric(url, "canary_guard_webhook_cooldown_refusals_total", action="rollback") == 1


def test_queued_retries_resume_after_a_restart(procs, tmp_path):
    data = plan_data()
    data["webhook"]["retry"] = {"attempts": 3, "backoff": 3, "max_backoff": 3}
    url, proc, record = _webhook(procs, tmp_path, data, env={"KUBECTL_FAIL": "1"})
    post(url, notification(alert()))
    wait_for(lambda: len(kubectl_calls(record)) == 1, what="first attempt")
    wait_for(lambda: actions(url)[0]["status"] == "queued", what="backing off")
    procs.stop(proc)
    url, _, record = _webhook(procs, tmp_path, data, env={"KUBECTL_FAIL": "1"}, name="webhook2")
    (run,) = settled(url, 1)
    assert run["status"] == "succeeded"
    assert [a["outcome"] for a in run["attempts"]] == ["failed", "ok"]


def test_crash_mid_action_is_marked_for_review_and_not_rerun(procs, tmp_path):
    url, proc, record = _webhook(procs, tmp_path, env={"KUBECTL_HANG": "60"})
    post(url, notification(alert(fingerprint="crash")))
    wait_for(lambda: kubectl_calls(record), what="kubectl to start")
    wait_for(lambda: actions(url)[0]["status"] == "running", what="run marked running")
    procs.stop(proc, signal.SIGKILL)

    url, _, _ = _webhook(procs, tmp_path, name="webhook2")
    runs = settled(url, 2)
    review = next(r for r in runs if r["action"] == "rollback")
    page = next(r for r in runs if r["action"] == "page")
    assert review["status"] == "needs_review"
    assert review["attempts"][0]["outcome"] == "interrupted"
    assert page["escalated_from"] == review["id"] and page["status"] == "succeeded"
    assert httpx.get(f"{url}/healthz").json()["needs_review"] == 1
    assert metric(url, "canary_guard_webhook_needs_review") == 1
    assert "Needs review (1)" in httpx.get(f"{url}/", headers=AUTH).text
    assert kubectl_calls(record) == [ROLLBACK_ARGV]  # never re-run
    post(url, notification(alert(fingerprint="crash")))  # nor by a re-delivery
    assert kubectl_calls(record) == [ROLLBACK_ARGV]
    conn = sqlite3.connect(tmp_path / "webhook.db")
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'needs_review'").fetchone()[0] == 1


def test_sigterm_during_kubectl_of_an_emergency_rollback_still_disables_the_features(procs, tmp_path):
    # issue 13: a SIGTERM during the kubectl step marked the whole run for review and the
    # feature disable (safe to repeat) never ran: PII kept being served.
    key = "sandbox-api-key-1"
    service = start_sandbox(procs, env={"RECOVERYOS_API_KEY": key})
    env = {"RECOVERYOS_API_KEY": key}
    url, proc, record = _webhook(procs, tmp_path, plan_data(service), env={**env, "KUBECTL_HANG": "60"})
    post(url, notification(alert(action="emergency_rollback", alertname="CanaryPIIExposure")))
    wait_for(lambda: kubectl_calls(record), what="kubectl to start")
    assert procs.stop(proc, signal.SIGTERM) == 0  # a clean stop: 5 s of grace, then out
    assert "released for takeover" in procs.log("webhook")

    url, _, record = _webhook(procs, tmp_path, plan_data(service), env=env, name="webhook2")
    runs = settled(url, 2)
    emergency = next(r for r in runs if r["action"] == "emergency_rollback")
    page = next(r for r in runs if r["action"] == "page")
    assert emergency["status"] == "needs_review" and emergency["taken_over"] == 1
    assert [(a["action"], a["outcome"]) for a in emergency["attempts"]] == [
        ("rollback", "interrupted"), ("disable_all_features", "ok")]
    assert page["escalated_from"] == emergency["id"]
    assert kubectl_calls(record) == [ROLLBACK_ARGV]  # never undone twice
    status = httpx.get(f"{service}/elite/system-status", headers={"Authorization": f"Bearer {key}"}).json()
    assert all(not f["enabled"] for f in status["features"].values())


def test_dry_run_records_but_runs_nothing(procs, tmp_path, sandbox):
    url, _, record = _webhook(procs, tmp_path, plan_data(sandbox), "--dry-run")
    post(url, notification(alert(fingerprint="a", action="emergency_rollback")))
    post(url, notification(alert(fingerprint="b", action="disable_feature", endpoint="edge_ai")))
    runs = settled(url, 2)
    assert {r["status"] for r in runs} == {"dry_run"}
    commands = [a["command"] for r in runs for a in r["attempts"]]
    assert {"method": "POST", "url": f"{sandbox}/elite/config/disable", "body": {"features": ["edge_ai"]},
            "timeout": 10.0} in commands
    assert any(c.get("argv", [None])[1:] == ROLLBACK_ARGV for c in commands)
    assert kubectl_calls(record) == []
    status = httpx.get(f"{sandbox}/elite/system-status").json()
    assert all(f["enabled"] for f in status["features"].values())
    assert httpx.get(f"{url}/healthz").json()["dry_run"] is True
    assert "Dry run" in httpx.get(f"{url}/", headers=AUTH).text


def test_metrics_endpoint_is_prometheus_text(procs, tmp_path):
    url, _, _ = _webhook(procs, tmp_path)
    resp = httpx.get(f"{url}/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0].split(" ")[0] for line in resp.text.splitlines() if not line.startswith("#")}
    for name in ("notifications_total", "alerts_total", "actions_total", "action_duration_seconds_count",
                 "duplicates_total", "cooldown_refusals_total", "queue_depth", "rejected_total"):
        assert "canary_guard_webhook_" + name in names, name
    assert not any(n.endswith("_created") for n in names)
    assert json.loads(httpx.get(f"{url}/healthz").text)["status"] == "ok"
