"""People in the loop: credentials, decisions on both stores, escalation, redaction, /healthz.

Flask's test client with the worker driven by hand, as in test_webhook_app.py; escalation posts
to a real Alertmanager.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
import urllib.request

import pytest
from canary_guard.webhook import redact
from canary_guard.webhook.app import create_app, shutdown, state
from canary_guard.webhook.auth import Users, hash_password, hash_token
from canary_guard.webhook.config import ConfigError, WebhookConfig
from canary_guard.webhook.escalate import Escalator
from canary_guard.webhook.store import open_store
from canary_guard.webhook.store.review import Stale
from conftest import free_port, need_binary
from webhook_helpers import AUTH, TOKEN, alert, install_kubectl, kubectl_calls, notification, plan_data

from canary_guard import contract
from canary_guard.plan import parse_plan

OPERATOR_TOKEN = "op-token-5b1e0c7d9a2f4e31"
VIEWER_TOKEN = "viewer-token-93aa71c2d4e5f6"
SERVICE_KEY = "svc-key-SECRET-7d41e"
OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
VIEW = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


@pytest.fixture
def users(tmp_path):
    path = tmp_path / "users"
    u = Users(None)
    u.path = str(path)
    u.add("alice", "operator", hash_password("alice-password-1"))
    u.add("bob", "viewer", hash_password("bob-password-22"))
    u.add("chatops", "operator", hash_token(OPERATOR_TOKEN))
    u.add("grafana", "viewer", hash_token(VIEWER_TOKEN))
    return path


@pytest.fixture
def kubectl(tmp_path, monkeypatch):
    bindir, record = install_kubectl(tmp_path)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("KUBECTL_RECORD", str(record))
    return record


@pytest.fixture
def make(tmp_path, users, monkeypatch):
    apps = []
    monkeypatch.setenv("RECOVERYOS_API_KEY", SERVICE_KEY)

    def _make(service_url="http://127.0.0.1:9", alertmanagers=(), **cfg):
        plan = parse_plan(plan_data(service_url))
        config = WebhookConfig(db=str(tmp_path / f"wh{len(apps)}.db"), token=TOKEN, start_worker=False,
                               users_file=str(users), alertmanagers=list(alertmanagers),
                               external_url="http://webhook.example:9112", **cfg)
        app = create_app(plan, config)
        apps.append(app)
        return app.test_client(), state(app)

    yield _make
    for app in apps:
        shutdown(app, grace=0)


def drain(s):
    for _ in range(50):
        if not s.worker.run_once(now=time.time() + 3600):
            return
    raise AssertionError("worker did not drain")


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def fail_disable(client, s):
    """A disable_feature run against a service that lacks the route (404): failed, escalated."""
    resp = client.post("/alerts", json=notification(alert("disable_feature", fingerprint="d1")), headers=AUTH)
    assert resp.status_code == 200
    drain(s)
    (incident,) = s.store.incidents()
    return incident["id"]


class Service404:
    """A local service with no feature-flag route, that echoes a secret in its error body."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"detail": "Not Found",
                                   "echo": f"Authorization: {self.headers.get('Authorization')}",
                                   "api_key": SERVICE_KEY}).encode()
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service():
    svc = Service404()
    yield svc
    svc.stop()


# -- credentials ------------------------------------------------------------------------------------


def test_every_read_needs_a_credential_health_and_metrics_stay_open(make):
    client, _ = make()
    for path in ("/", "/api/actions", "/api/incidents", "/api/review", "/api/decisions"):
        resp = client.get(path)
        assert resp.status_code == 401, path
    assert client.get("/api/actions").headers["WWW-Authenticate"].startswith("Bearer")
    assert "WWW-Authenticate" not in client.get("/").headers  # the login form, not a browser dialog
    assert 'action="/login"' in client.get("/").get_data(as_text=True)
    assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
    for headers in (VIEW, OP, AUTH, basic("bob", "bob-password-22"), basic("alice", "alice-password-1")):
        assert client.get("/api/actions", headers=headers).status_code == 200, headers
        assert client.get("/", headers=headers).status_code == 200, headers
    for headers in ({"Authorization": "Bearer nope"}, basic("alice", "wrong"), basic("nobody", "x"),
                    {"Authorization": "Basic !!"}, {"Authorization": "Digest x"}):
        assert client.get("/api/actions", headers=headers).status_code == 401, headers


def test_users_file_is_checked_at_start_and_never_holds_a_plain_password(tmp_path):
    bad = tmp_path / "users"
    bad.write_text("alice operator hunter2\n")
    plan = parse_plan(plan_data())
    with pytest.raises(ConfigError, match=r"users:1: credential: must be scrypt\$"):
        create_app(plan, WebhookConfig(db=str(tmp_path / "x.db"), token=TOKEN, users_file=str(bad),
                                       start_worker=False))
    bad.write_text("alice admin sha256$" + "0" * 64 + "\n")
    with pytest.raises(ConfigError, match="users:1: role: must be one of operator, viewer"):
        create_app(plan, WebhookConfig(db=str(tmp_path / "y.db"), token=TOKEN, users_file=str(bad),
                                       start_worker=False))


def test_login_session_and_csrf(make):
    client, s = make()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    wrong = {"username": "alice", "password": "wrong", "csrf": csrf}
    assert client.post("/login", data=wrong).status_code == 401
    assert client.post("/login", data={"username": "alice", "password": "alice-password-1",
                                       "csrf": "forged"}).status_code == 400
    resp = client.post("/login", data={"username": "alice", "password": "alice-password-1", "csrf": csrf})
    assert resp.status_code == 303
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    html = client.get("/").get_data(as_text=True)
    assert "signed in as <b>alice</b> (operator" in html
    iid = fail_disable(client, s)
    html = client.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    # a form without the session's CSRF token is refused and decides nothing
    resp = client.post(f"/incidents/{iid}/decide", data={"decision": "dismiss", "note": "x", "csrf": "bad"})
    assert resp.status_code == 403 and s.store.decisions() == []
    # the session cookie alone never decides through the API (a cross-site request would carry it)
    resp = client.post(f"/api/incidents/{iid}/decision", json={"decision": "dismiss", "note": "x"})
    assert resp.status_code == 403 and s.store.decisions() == []
    resp = client.post(f"/incidents/{iid}/decide",
                       data={"decision": "dismiss", "note": "route missing on this build", "csrf": csrf,
                             "after": "0"})
    assert resp.status_code == 303
    (d,) = s.store.decisions()
    assert (d["operator"], d["decision"], d["note"], d["via"]) == (
        "alice", "dismiss", "route missing on this build", "page")


def test_viewers_read_but_never_decide(make):
    client, s = make()
    iid = fail_disable(client, s)
    for headers in (VIEW, AUTH, basic("bob", "bob-password-22")):
        resp = client.post(f"/api/incidents/{iid}/decision", json={"decision": "rollback"}, headers=headers)
        assert resp.status_code == 403, headers
    assert s.store.decisions() == []


# -- decisions ----------------------------------------------------------------------------------------


def test_api_rollback_now_runs_exactly_one_undo_recorded_with_the_operators_name(make, kubectl):
    client, s = make()
    iid = fail_disable(client, s)
    review = client.get("/api/review", headers=OP).get_json()
    assert review["count"] == 1 and review["incidents"][0]["why"] == "failed"
    resp = client.post(f"/api/incidents/{iid}/decision", headers=OP,
                       json={"decision": "rollback", "note": "feature route missing", "after": 0})
    assert resp.status_code == 201, resp.get_json()
    d = resp.get_json()["decision"]
    assert d["operator"] == "chatops" and d["via"] == "api" and d["run"]
    # a second click on the same page (the same "after") is stale: nothing more runs
    again = client.post(f"/api/incidents/{iid}/decision", headers=OP,
                        json={"decision": "rollback", "after": 0})
    assert again.status_code == 409 and again.get_json()["latest"]["operator"] == "chatops"
    drain(s)
    assert [c[:3] for c in kubectl_calls(kubectl)] == [["rollout", "undo", "deployment/recoveryos"]]
    (run,) = [r for r in client.get("/api/actions", headers=OP).get_json()["actions"] if r["id"] == d["run"]]
    assert run["status"] == "succeeded" and "decided by chatops (api): rollback" in run["cause"]
    assert client.get("/api/review", headers=OP).get_json()["count"] == 0


def test_disable_now_and_dismiss_need_what_they_need(make):
    client, s = make()
    iid = fail_disable(client, s)
    resp = client.post(f"/api/incidents/{iid}/decision", headers=OP, json={"decision": "dismiss"})
    assert resp.status_code == 400 and resp.get_json()["error"] == "note_required"
    resp = client.post(f"/api/incidents/{iid}/decision", headers=OP, json={"decision": "explode"})
    assert resp.status_code == 400
    assert client.post("/api/incidents/999/decision", headers=OP,
                       json={"decision": "dismiss", "note": "x"}).status_code == 404
    resp = client.post(f"/api/incidents/{iid}/decision", headers=OP, json={"decision": "disable_feature"})
    assert resp.status_code == 201
    (run,) = [r for r in s.store.actions() if r["id"] == resp.get_json()["decision"]["run"]]
    assert run["action"] == "disable_feature"
    # the retry fails again (the route is still missing): the incident needs a person again
    drain(s)
    assert [f["run"] for f in s.store.failed_runs()] == [run["id"]]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else str(tmp_path / "s.db")
    st = open_store(url, exclusive=False)
    yield st
    st.close()


def test_decisions_in_both_stores(store):
    from canary_guard.webhook import payload

    n = payload.validate(notification(alert("disable_feature", fingerprint="a"),
                                      alert("page", fingerprint="b", alertname="CanaryLatencyHigh")))
    rec = store.record(n, "{}", {"disable_feature": 2, "page": 3})
    failed_run = rec.alerts[0].run_id
    inc_failed, inc_page = rec.alerts[0].incident_id, rec.alerts[1].incident_id
    for status in ("partial", "succeeded"):  # claimed by priority: disable_feature, then the page
        run = store.claim(lease=30)
        store.finish(run.id, status, "POST http://svc/elite/config/disable -> HTTP 404", [])
    assert [(f["run"], f["status"]) for f in store.failed_runs()] == [(failed_run, "partial")]
    assert store.awaiting_review(["page"]) == [inc_page]
    d = store.decide(inc_failed, "rollback", "alice", "by hand", "page", action="rollback", after=0,
                     now=time.time() + 1)
    assert d["run"] and d["operator"] == "alice" and d["note"] == "by hand"
    assert store.failed_runs() == []
    with pytest.raises(Stale):
        store.decide(inc_failed, "dismiss", "bob", "late", "api", after=0)
    assert len(store.decisions(inc_failed)) == 1
    # the operator's run fails too: the incident needs a person again
    run = store.claim(lease=30, now=time.time() + 2)
    assert run.id == d["run"] and run.action == "rollback"
    store.finish(run.id, "failed", "exit 1", [], now=time.time() + 2)
    assert [f["run"] for f in store.failed_runs()] == [d["run"]]
    store.decide(inc_page, "dismiss", "bob", "latency back to normal", "api")
    assert store.awaiting_review(["page"]) == []
    assert [x["decision"] for x in store.decisions()] == ["dismiss", "rollback"]


# -- escalation, health, redaction ----------------------------------------------------------------


def test_healthz_degraded_and_banner_while_a_failed_action_waits(make):
    client, s = make()
    assert client.get("/healthz").get_json()["status"] == "ok"
    iid = fail_disable(client, s)
    health = client.get("/healthz")
    assert health.status_code == 200  # degraded, not dead: a restart would not fix it
    body = health.get_json()
    assert body["status"] == "degraded" and body["open_escalations"] == 1
    html = client.get("/", headers=VIEW).get_data(as_text=True)
    assert 'id="failed-banner"' in html and "need a decision" in html
    assert "read-only: an operator decides" in html and 'action="/incidents/' not in html
    client.post(f"/api/incidents/{iid}/decision", headers=OP, json={"decision": "dismiss", "note": "ok"})
    assert client.get("/healthz").get_json()["status"] == "ok"
    assert 'id="failed-banner"' not in client.get("/", headers=VIEW).get_data(as_text=True)


def test_secrets_never_reach_records_or_pages(make, service):
    client, s = make(service_url=service.url.replace("http://", "http://user:pa55word@") + "/?key=qk-secret")
    iid = fail_disable(client, s)
    records = json.dumps(client.get("/api/actions", headers=OP).get_json())
    page = client.get("/", headers=OP).get_data(as_text=True)
    for text in (records, page, json.dumps(s.store.failed_runs())):
        for secret in (SERVICE_KEY, "pa55word", "qk-secret", TOKEN, OPERATOR_TOKEN):
            assert secret not in text
    assert "HTTP 404" in records and "***" in records
    assert iid


def test_redaction_rules():
    assert redact.url("https://u:p@h.example/x?key=abc&x=1") == "https://***@h.example/x?key=***&x=***"
    assert redact.url("http://svc:8000/elite/config/disable") == "http://svc:8000/elite/config/disable"
    out = redact.text('{"token": "abc123", "detail": "bad"} Authorization: Bearer zzzz9999', ["zzzz9999"])
    assert "abc123" not in out and "zzzz9999" not in out and '"detail": "bad"' in out
    assert redact.text("known-secret-1 " + "x" * 600, ["known-secret-1"]).startswith("*** xxx")
    assert redact.text("x" * 600).endswith("(100 more characters cut)")
    assert redact.value({"url": "http://a:b@h/?s=1", "body": {"password": "pw"}}) == {
        "url": "http://***@h/?s=***", "body": {"password": "***"}}


def test_canary_guards_own_alerts_never_run_an_action(make, kubectl):
    client, s = make()
    own = alert("rollback", alertname=contract.ALERT_ACTION_FAILED, fingerprint="own", run="3")
    assert client.post("/alerts", json=notification(own), headers=AUTH).status_code == 200
    drain(s)
    assert kubectl_calls(kubectl) == []
    (run,) = s.store.actions()
    assert run["status"] == "unknown_action"


def am_alerts(am):
    with urllib.request.urlopen(f"{am}/api/v2/alerts?filter=alertname%3D%22{contract.ALERT_ACTION_FAILED}%22",
                                timeout=5) as resp:
        return json.loads(resp.read())


def test_escalation_reaches_a_real_alertmanager_and_ends_when_a_person_decides(make, procs, tmp_path,
                                                                                service):
    port = free_port()
    am = f"http://127.0.0.1:{port}"
    config = tmp_path / "am.yml"
    config.write_text("route: {receiver: people}\nreceivers: [{name: people}]\n")
    procs.start([shutil.which("prometheus-alertmanager") or need_binary("prometheus-alertmanager"),
                 f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                "alertmanager", ready_url=f"{am}/-/ready", timeout=30)
    dead = f"http://127.0.0.1:{free_port()}"  # a second Alertmanager that is down: logged, retried
    client, s = make(service_url=service.url, alertmanagers=[am, dead])
    iid = fail_disable(client, s)
    esc: Escalator = s.escalator
    assert esc.sync() == 1
    (a,) = am_alerts(am)
    labels = a["labels"]
    assert labels["alertname"] == "CanaryGuardActionFailed" and labels["severity"] == "critical"
    assert (labels["action"], labels["track"], labels["endpoint"]) == ("disable_feature", "canary", "edge_ai")
    assert labels["run"].isdigit() and a["status"]["state"] == "active"
    assert a["annotations"]["incident_url"] == f"http://webhook.example:9112/#incident-{iid}"
    assert "HTTP 404" in a["annotations"]["description"]
    assert list(esc.last_error) == [dead]
    # kept alive: re-posted before endsAt runs out
    esc.repost_every = 0
    first_end = a["endsAt"]
    time.sleep(1.1)
    esc.sync()
    (a,) = am_alerts(am)
    assert a["endsAt"] > first_end
    client.post(f"/api/incidents/{iid}/decision", headers=OP, json={"decision": "dismiss", "note": "known"})
    esc.sync()
    deadline = time.monotonic() + 10
    while am_alerts(am) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert am_alerts(am) == []
