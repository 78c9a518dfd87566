"""Webhook tests at the application level (Flask's test client) where HTTP adds nothing.

The worker is not started here: tests drive it by hand (``drain``), so every step is
deterministic. Real HTTP, restarts and crashes are in test_webhook_http.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time

import pytest
from canary_guard.webhook import payload
from canary_guard.webhook.api import parse_since
from canary_guard.webhook.app import create_app, shutdown, state
from canary_guard.webhook.config import ConfigError, WebhookConfig
from canary_guard.webhook.store import StoreLocked, open_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from webhook_helpers import (
    TOKEN,
    alert,
    install_kubectl,
    kubectl_calls,
    notification,
    plan_data,
)

from canary_guard.plan import parse_plan

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def kubectl(tmp_path, monkeypatch):
    bindir, record = install_kubectl(tmp_path)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("KUBECTL_RECORD", str(record))
    return record


@pytest.fixture
def make(tmp_path):
    """make(plan_overrides..., dry_run=False) -> (client, state); apps are shut down after the test."""
    apps = []

    def _make(data=None, dry_run=False, token=TOKEN, db=None, **webhook):
        plan = parse_plan(data or plan_data(**webhook))
        cfg = WebhookConfig(db=str(db or tmp_path / f"wh{len(apps)}.db"), token=token,
                            insecure_no_auth=token is None, dry_run=dry_run, start_worker=False)
        app = create_app(plan, cfg)
        apps.append(app)
        client = app.test_client()
        if token:  # reads need a credential too; Alertmanager's token may read (webhook/views.py)
            get = client.get
            client.get = lambda *a, headers=None, **kw: get(
                *a, headers={"Authorization": f"Bearer {token}", **(headers or {})}, **kw)
        return client, state(app)

    yield _make
    for app in apps:
        shutdown(app, grace=0)


def drain(state, rounds: int = 100) -> None:
    """Run the worker until nothing is due, even runs backing off (time is skipped ahead)."""
    worker = state.worker
    for _ in range(rounds):
        if not worker.run_once(now=time.time() + 3600):
            return
    raise AssertionError("worker did not drain")


def send(client, body, headers=None, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post("/alerts", data=data, headers={**AUTH, **(headers or {})},
                       content_type=content_type)


def runs(client, **params):
    resp = client.get("/api/actions", query_string=params)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["actions"]


# -- startup and auth --------------------------------------------------------------------------


def test_refuses_to_build_without_a_credential(tmp_path):
    plan = parse_plan(plan_data())
    with pytest.raises(ConfigError, match="CANARY_GUARD_WEBHOOK_TOKEN"):
        create_app(plan, WebhookConfig(db=str(tmp_path / "x.db"), token=None, start_worker=False))


def test_insecure_no_auth_accepts_without_credentials(make):
    client, _ = make(token=None)
    assert client.post("/alerts", json=notification()).status_code == 200


@pytest.mark.parametrize("header", [
    None, "Bearer wrong", f"Bearer {TOKEN}x", f"Token {TOKEN}", "Bearer",
    "Basic " + base64.b64encode(b"am:wrong").decode(), "Basic !!!notbase64",
])
def test_bad_credentials_are_401_and_record_nothing(make, header):
    client, state = make()
    headers = {"Authorization": header} if header else {}
    resp = client.post("/alerts", json=notification(), headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "unauthorized"
    assert "Bearer" in resp.headers["WWW-Authenticate"]
    assert state.store.counts()["notifications"] == 0


@pytest.mark.parametrize("header", [
    f"Bearer {TOKEN}", f"bearer {TOKEN}",
    "Basic " + base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode(),
    "Basic " + base64.b64encode(f":{TOKEN}".encode()).decode(),
])
def test_right_credentials_are_accepted(make, header):
    client, state = make()
    resp = client.post("/alerts", json=notification(), headers={"Authorization": header})
    assert resp.status_code == 200, resp.get_json()
    assert state.store.counts()["notifications"] == 1


# -- bad input: every class is a 4xx naming the problem, and nothing is recorded or run ---------


BAD_PAYLOADS = [
    ([1, 2], "(top level): must be a JSON object"),
    ("just a string", "(top level)"),
    ({"status": "firing"}, "alerts: required"),
    ({**notification(), "alerts": []}, "alerts: must hold at least one alert"),
    ({**notification(), "alerts": {}}, "alerts: must be a list"),
    ({**notification(), "status": "burning"}, "status: must be firing or resolved"),
    ({**notification(), "version": "3"}, "version"),
    ({**notification(), "commonLabels": {"a": 1}}, "commonLabels.a: must be a string"),
    ({**notification(), "truncatedAlerts": -1}, "truncatedAlerts"),
    (notification({**alert(), "labels": {"alertname": "X", "action": ["rollback"]}}),
     "alerts[0].labels.action: must be a string"),
    (notification({**alert(), "labels": {}}), "alerts[0].labels: must not be empty"),
    (notification({k: v for k, v in alert().items() if k != "labels"}), "alerts[0].labels: required"),
    (notification({k: v for k, v in alert().items() if k != "startsAt"}), "alerts[0].startsAt: required"),
    (notification({**alert(), "startsAt": "yesterday"}), "alerts[0].startsAt: must be an RFC 3339"),
    (notification({**alert(), "status": None}), "alerts[0].status"),
    (notification(alert(), "not an alert"), "alerts[1]: must be an object"),
    (notification({**alert(), "fingerprint": 42}), "alerts[0].fingerprint"),
]


@pytest.mark.parametrize("body,problem", BAD_PAYLOADS)
def test_not_a_notification_is_400_naming_the_field(make, body, problem):
    client, state = make()
    resp = send(client, body)
    assert resp.status_code == 400
    err = resp.get_json()
    assert err["error"] == "invalid_notification"
    assert problem in err["detail"]
    assert state.store.counts()["notifications"] == 0


@pytest.mark.parametrize("body", [b"{", b"", b"\xff\xfe\x00garbage", b"[" * 100_000, b"{'single': 1}"])
def test_malformed_json_is_400(make, body):
    client, state = make()
    resp = send(client, body)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "malformed_json"
    assert state.store.counts()["notifications"] == 0


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_wrong_content_type_is_415(make, ctype):
    client, state = make()
    resp = send(client, notification(), content_type=ctype)
    assert resp.status_code == 415
    assert ctype in resp.get_json()["detail"]
    assert state.store.counts()["notifications"] == 0


def test_json_with_charset_is_accepted(make):
    client, _ = make()
    assert send(client, notification(), content_type="application/json; charset=utf-8").status_code == 200


def test_oversized_body_is_413(make):
    client, state = make()
    big = notification(alert(padding="x" * (1 << 20)))
    resp = send(client, big)
    assert resp.status_code == 413
    assert "1048576" in resp.get_json()["detail"]
    assert state.store.counts()["notifications"] == 0


def test_unknown_fields_are_tolerated_and_fingerprint_derived_when_missing():
    body = notification({**alert(), "newField": [1, 2], "fingerprint": None})
    n = payload.validate(body)
    again = payload.validate(notification({**alert(), "fingerprint": ""}))
    assert n.alerts[0].fingerprint == again.alerts[0].fingerprint  # same labels, same incident
    assert n.alerts[0].fingerprint_derived


# -- fuzz: never a 5xx, never an action --------------------------------------------------------

json_values = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.floats(allow_nan=False) | hs.text(max_size=20),
    lambda inner: hs.lists(inner, max_size=4) | hs.dictionaries(hs.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)

# Notifications with exactly one required part broken: each must be refused.
_breakers = {
    "status": hs.one_of(hs.none(), hs.integers(), hs.text().filter(lambda s: s not in payload.STATUSES)),
    "alerts": hs.one_of(hs.none(), hs.just([]), hs.dictionaries(hs.text(max_size=5), json_values, max_size=2),
                        hs.integers(), hs.text()),
}
_alert_breakers = {
    "status": hs.one_of(hs.none(), hs.integers(), hs.text().filter(lambda s: s not in payload.STATUSES)),
    "labels": hs.one_of(hs.none(), hs.just({}), hs.lists(json_values, max_size=2),
                        hs.dictionaries(hs.text(max_size=8), hs.integers() | hs.none() | hs.booleans(),
                                        min_size=1, max_size=3)),
    "startsAt": hs.one_of(hs.none(), hs.integers(), hs.text(max_size=30).filter(
        lambda s: not payload._TIME_RE.match(s))),
}


@hs.composite
def broken_notifications(draw):
    body = notification(alert(fingerprint=draw(hs.text(min_size=1, max_size=20)),
                              action=draw(hs.sampled_from(["rollback", "emergency_rollback", "page"]))))
    if draw(hs.booleans()):
        key = draw(hs.sampled_from(sorted(_breakers)))
        body[key] = draw(_breakers[key])
    else:
        key = draw(hs.sampled_from(sorted(_alert_breakers)))
        body["alerts"][0][key] = draw(_alert_breakers[key])
    for _ in range(draw(hs.integers(0, 3))):  # and some noise that must be tolerated
        noise = draw(hs.text(min_size=1, max_size=8).filter(lambda k: k not in notification()))
        body[noise] = draw(json_values)
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=hs.one_of(json_values, broken_notifications()))
def test_fuzz_never_5xx_never_an_action(make, kubectl, body):
    client, state = _fuzz_app(make)
    resp = send(client, body)
    assert 400 <= resp.status_code < 500, (resp.status_code, body)
    assert resp.get_json()["error"] in ("invalid_notification", "malformed_json")
    drain(state)
    assert runs(client) == []
    assert kubectl_calls(kubectl) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=hs.binary(max_size=200))
def test_fuzz_bytes_never_5xx(make, kubectl, body):
    client, state = _fuzz_app(make)
    resp = send(client, body)
    assert 400 <= resp.status_code < 500
    assert runs(client) == []


_no_nul = hs.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # refused: see below


def _fp(labels: dict) -> str:
    return hashlib.sha1(json.dumps(labels, sort_keys=True).encode()).hexdigest()


def _fuzz_app(make):
    """One app for all the examples of a test (building one per example would be slow)."""
    if not hasattr(make, "fuzz"):
        make.fuzz = make()
    return make.fuzz


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=hs.dictionaries(hs.text(_no_nul, min_size=1, max_size=12), hs.text(_no_nul, max_size=30),
                              max_size=6),
       status=hs.sampled_from(["firing", "resolved"]))
def test_fuzz_valid_notifications_with_any_labels_never_run_a_guess(make, kubectl, labels, status):
    """Arbitrary labels (no plan action name): recorded, 200, but nothing is executed."""
    client, state = _fuzz_app(make)
    labels.pop("action", None)
    labels["alertname"] = "Fuzz"
    body = notification({**alert(status=status), "labels": labels, "fingerprint": _fp(labels)})
    resp = send(client, body)
    assert resp.status_code == 200
    drain(state)
    for run in runs(client):
        assert run["status"] == "unknown_action" and run["attempts"] == []
    assert kubectl_calls(kubectl) == []


# -- what runs ----------------------------------------------------------------------------------


def test_firing_rollback_runs_the_plan_argv(make, kubectl):
    client, state = make()
    resp = send(client, notification(alert(action="rollback")))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["alerts"][0]["new"] and body["alerts"][0]["run_status"] == "queued"
    assert kubectl_calls(kubectl) == []  # the reply does not wait for the action
    drain(state)
    assert kubectl_calls(kubectl) == [["rollout", "undo", "deployment/recoveryos", "-n", "recoveryos"]]
    (run,) = runs(client)
    assert run["status"] == "succeeded"
    assert run["attempts"][0]["command"]["argv"][0].endswith("/bin/kubectl")


def test_kubectl_argv_has_context_and_revision_from_the_plan(make, kubectl, tmp_path):
    data = plan_data()
    data["actions"]["rollback"].update({"context": "prod-eu", "to_revision": 7, "namespace": "ros",
                                        "deployment": "api"})
    client, state = make(data)
    send(client, notification(alert(action="rollback")))
    drain(state)
    assert kubectl_calls(kubectl) == [["rollout", "undo", "deployment/api", "-n", "ros", "--context",
                                       "prod-eu", "--to-revision", "7"]]


def test_resolved_alerts_are_recorded_and_run_nothing(make, kubectl):
    client, state = make()
    resp = send(client, notification(alert(status="resolved")))
    assert resp.status_code == 200
    drain(state)
    assert runs(client) == []
    assert kubectl_calls(kubectl) == []
    (incident,) = client.get("/api/incidents").get_json()["incidents"]
    assert incident["status"] == "resolved"


def test_resolution_of_a_firing_incident_runs_nothing_more(make, kubectl):
    client, state = make()
    send(client, notification(alert()))
    drain(state)
    resp = send(client, notification(alert(status="resolved")))
    assert resp.get_json()["alerts"][0] == {"incident": 1, "status": "resolved", "new": False,
                                           "duplicate": False, "coalesced_into": None, "run": None,
                                           "run_status": None}
    drain(state)
    assert len(kubectl_calls(kubectl)) == 1
    assert client.get("/api/incidents").get_json()["incidents"][0]["status"] == "resolved"


@pytest.mark.parametrize("action", ["rolback", "rm -rf /", None])
def test_unknown_action_is_recorded_never_guessed(make, kubectl, action):
    client, state = make()
    resp = send(client, notification(alert(action=action)))
    assert resp.status_code == 200
    drain(state)
    (run,) = runs(client)
    assert run["status"] == "unknown_action"
    assert run["attempts"] == []
    assert kubectl_calls(kubectl) == []
    metrics = client.get("/metrics").get_data(as_text=True)
    label = "unknown" if action else "none"
    assert f'canary_guard_webhook_alerts_total{{action="{label}",status="firing"}} 1.0' in metrics
    assert f'canary_guard_webhook_actions_total{{action="{label}",outcome="unknown_action"}} 1.0' in metrics


def test_duplicates_in_one_app_give_one_run(make, kubectl):
    client, state = make()
    for _ in range(5):
        assert send(client, notification(alert())).status_code == 200
    drain(state)
    assert len(runs(client)) == 1
    assert len(kubectl_calls(kubectl)) == 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "canary_guard_webhook_duplicates_total 4.0" in metrics
    counts = state.store.counts()
    assert counts["notifications"] == 5 and counts["alerts"] == 5 and counts["incidents"] == 1


def test_same_fingerprint_new_startsat_is_a_new_incident(make, kubectl):
    client, state = make(cooldown=0)
    send(client, notification(alert(starts_at="2024-05-01T12:00:00Z")))
    send(client, notification(alert(starts_at="2024-05-01T13:00:00.123456789Z")))
    drain(state)
    assert len(kubectl_calls(kubectl)) == 2


def test_cooldown_refuses_a_second_rollback_of_the_deployment(make, kubectl):
    client, state = make()  # cooldown 10m (the plan's)
    send(client, notification(alert(fingerprint="a", endpoint="edge_ai")))
    drain(state)
    send(client, notification(alert(fingerprint="b", endpoint="neuromorphic")))
    # emergency_rollback's first step rolls back the same deployment: refused too; its
    # disable step still runs (it has no cooldown).
    send(client, notification(alert(fingerprint="c", action="emergency_rollback",
                                    alertname="CanaryPIIExposure")))
    drain(state)
    assert len(kubectl_calls(kubectl)) == 1
    by_fp = {r["incident"]["fingerprint"]: r for r in runs(client) if r["escalated_from"] is None}
    assert by_fp["a"]["status"] == "succeeded"
    assert by_fp["b"]["status"] == "cooldown"
    assert "refused until" in by_fp["b"]["attempts"][0]["detail"]
    assert [a["outcome"] for a in by_fp["c"]["attempts"] if a["step"] == 0] == ["cooldown"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'canary_guard_webhook_cooldown_refusals_total{action="rollback"} 2.0' in metrics


def test_cooldown_zero_allows_back_to_back(make, kubectl):
    client, state = make(cooldown=0)
    send(client, notification(alert(fingerprint="a")))
    send(client, notification(alert(fingerprint="b")))
    drain(state)
    assert len(kubectl_calls(kubectl)) == 2


def test_failures_are_retried_with_backoff_then_escalated(make, kubectl, monkeypatch):
    monkeypatch.setenv("KUBECTL_FAIL", "99")
    client, state = make()
    send(client, notification(alert()))
    state.worker.run_once()
    (run,) = runs(client)
    assert run["status"] == "queued" and "retry in 0.05s" in run["reason"]
    drain(state)
    assert len(kubectl_calls(kubectl)) == 3  # plan: 3 attempts
    rollback = runs(client, action="rollback")[0]
    assert rollback["status"] == "failed"
    assert [a["outcome"] for a in rollback["attempts"]] == ["failed"] * 3
    assert [a["attempt"] for a in rollback["attempts"]] == [1, 2, 3]
    (page,) = runs(client, action="page")
    assert page["escalated_from"] == rollback["id"] and page["status"] == "succeeded"
    assert "gave up after 3 attempts" in page["cause"]


def test_a_transient_failure_recovers_on_retry(make, kubectl, monkeypatch):
    monkeypatch.setenv("KUBECTL_FAIL", "1")
    client, state = make()
    send(client, notification(alert()))
    drain(state)
    (run,) = runs(client)
    assert run["status"] == "succeeded"
    assert [a["outcome"] for a in run["attempts"]] == ["failed", "ok"]


def test_missing_deployment_is_not_retried(make, kubectl, monkeypatch):
    monkeypatch.setenv("KUBECTL_FAIL", "99")
    monkeypatch.setenv("KUBECTL_FAIL_STDERR",
                       'Error from server (NotFound): deployments.apps "recoveryos" not found')
    client, state = make()
    send(client, notification(alert()))
    drain(state)
    assert len(kubectl_calls(kubectl)) == 1
    assert runs(client, action="page")[0]["status"] == "succeeded"


def test_timeout_kills_the_command_and_retries(make, kubectl, monkeypatch):
    monkeypatch.setenv("KUBECTL_HANG", "30")
    data = plan_data()
    data["actions"]["rollback"]["timeout"] = 0.3
    data["webhook"]["retry"]["attempts"] = 2
    client, state = make(data)
    send(client, notification(alert()))
    drain(state)
    rollback = runs(client, action="rollback")[0]
    assert [a["outcome"] for a in rollback["attempts"]] == ["timeout", "timeout"]
    assert rollback["status"] == "failed"
    assert runs(client, action="page")


def test_kubectl_missing_escalates_at_once(make, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    client, state = make()
    send(client, notification(alert()))
    drain(state)
    rollback = runs(client, action="rollback")[0]
    assert rollback["status"] == "failed"
    assert rollback["attempts"][0]["outcome"] == "not_found"
    assert len(rollback["attempts"]) == 1


def test_dry_run_records_what_it_would_do_and_runs_nothing(make, kubectl):
    client, state = make(dry_run=True)
    send(client, notification(alert(fingerprint="a", action="emergency_rollback")))
    send(client, notification(alert(fingerprint="b", action="disable_feature", endpoint="edge_ai")))
    drain(state)
    assert kubectl_calls(kubectl) == []
    by_action = {r["action"]: r for r in runs(client)}
    emergency = by_action["emergency_rollback"]
    assert emergency["status"] == "dry_run" and emergency["dry_run"]
    assert emergency["attempts"][0]["command"]["argv"][1:] == ["rollout", "undo", "deployment/recoveryos",
                                                               "-n", "recoveryos"]
    assert emergency["attempts"][1]["command"]["body"] == {"features": parse_plan(plan_data()).features()}
    disable = by_action["disable_feature"]["attempts"][0]
    assert disable["outcome"] == "dry_run"
    assert disable["command"]["url"] == "http://127.0.0.1:9/elite/config/disable"
    assert disable["command"]["body"] == {"features": ["edge_ai"]}
    # a dry run does not start a real cooldown
    assert state.store.cooldown("kubectl_rollback:/recoveryos/deployment/recoveryos") is None


@pytest.mark.parametrize("endpoint", ["not_an_endpoint", "../../etc", None])
def test_endpoint_label_not_in_the_plan_is_refused(make, endpoint):
    client, state = make()
    send(client, notification(alert(action="disable_feature", endpoint=endpoint)))
    drain(state)
    run = runs(client, action="disable_feature")[0]
    assert run["status"] == "refused"
    assert run["attempts"][0]["outcome"] == "refused"
    assert run["attempts"][0]["command"] == {}
    assert runs(client, action="page")[0]["escalated_from"] == run["id"]


def test_api_actions_filters(make, kubectl):
    client, state = make(cooldown=0)
    send(client, notification(alert(fingerprint="a", endpoint="edge_ai")))
    send(client, notification(alert(fingerprint="b", endpoint="homomorphic", action="page")))
    send(client, notification(alert(fingerprint="c", action="nope")))
    drain(state)
    assert [r["incident"]["fingerprint"] for r in runs(client, action="rollback")] == ["a"]
    assert [r["incident"]["fingerprint"] for r in runs(client, endpoint="homomorphic")] == ["b"]
    assert [r["action"] for r in runs(client, status="unknown_action")] == ["nope"]
    assert len(runs(client, limit=2)) == 2
    assert len(runs(client, since="1h")) == 3
    assert runs(client, since=str(time.time() + 60)) == []
    assert runs(client, since="2000-01-01T00:00:00Z") != []
    for bad in ({"status": "bogus"}, {"limit": "x"}, {"limit": "0"}, {"since": "whenever"}):
        resp = client.get("/api/actions", query_string=bad)
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_query"


def test_parse_since():
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since("2024-01-01T00:00:00Z") == 1704067200.0


def test_html_page_lists_incidents_and_what_was_done(make, kubectl):
    client, state = make()
    send(client, notification(alert(fingerprint="a")))
    send(client, notification(alert(fingerprint="z", action="made_up")))
    drain(state)
    html = client.get("/").get_data(as_text=True)
    assert "CanaryErrorRateHigh" in html
    assert "rollout undo deployment/recoveryos -n recoveryos" in html
    assert "succeeded" in html and "unknown_action" in html
    assert "<script" not in html


def test_html_escapes_labels(make):
    client, state = make()
    send(client, notification(alert(alertname="<script>alert(1)</script>", action="x")))
    assert "<script>alert(1)" not in client.get("/").get_data(as_text=True)


def test_metrics_and_healthz(make, kubectl):
    client, state = make()
    send(client, notification(alert()))
    send(client, b"{", headers={})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'canary_guard_webhook_notifications_total{status="firing"} 1.0' in text
    assert 'canary_guard_webhook_rejected_total{reason="malformed_json"} 1.0' in text
    assert "canary_guard_webhook_queue_depth 1.0" in text
    drain(state)
    text = client.get("/metrics").get_data(as_text=True)
    assert "canary_guard_webhook_queue_depth 0.0" in text
    assert 'canary_guard_webhook_actions_total{action="rollback",outcome="succeeded"} 1.0' in text
    assert 'canary_guard_webhook_action_duration_seconds_count{action="rollback"} 1.0' in text
    health = client.get("/healthz").get_json()
    assert health["notifications"] == 1 and health["queue_depth"] == 0


def test_store_schema_and_wal(tmp_path):
    db = tmp_path / "s.db"
    store = open_store(str(db))
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"notifications", "alerts", "incidents", "runs", "attempts", "cooldowns"} <= tables
    with pytest.raises(StoreLocked):
        open_store(str(db))  # one webhook per database
    store.close()
    open_store(str(db)).close()


def test_notification_is_recorded_before_the_reply(make):
    client, state = make()
    resp = send(client, notification(alert(action="page")))
    nid = resp.get_json()["notification"]
    row = sqlite3.connect(state.config.db).execute(
        "SELECT status, alert_count, body FROM notifications WHERE id = ?", (nid,)).fetchone()
    assert row[0] == "firing" and row[1] == 1 and json.loads(row[2])["receiver"] == "canary-guard"


def _post_without_length(client, body: bytes):
    """POST /alerts as a chunked body arrives: no Content-Length, the input stream terminated."""
    from werkzeug.test import EnvironBuilder

    env = EnvironBuilder(method="POST", path="/alerts", headers=AUTH, content_type="application/json",
                         input_stream=__import__("io").BytesIO(body)).get_environ()
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input_terminated"] = True
    return client.open(env)


def test_one_request_path_for_every_body_shape(make, kubectl):
    # With a Content-Length or chunked, good or bad: the same handler, the same answers.
    client, state = make()
    body = json.dumps(notification(alert(action="page"))).encode()
    fast = send(client, body)
    chunked = _post_without_length(client, body)
    assert fast.status_code == chunked.status_code == 200
    assert fast.content_type == chunked.content_type == "application/json"
    f, c = fast.get_json(), chunked.get_json()
    assert (f["notification"], c["notification"]) == (1, 2)
    assert f["alerts"][0] | {"new": False, "duplicate": True, "run": None, "run_status": None} \
        == c["alerts"][0]
    bad = json.dumps({"alerts": "nope", "status": "firing"}).encode()
    assert send(client, bad).get_json() == _post_without_length(client, bad).get_json()
    assert send(client, bad).status_code == _post_without_length(client, bad).status_code == 400
    big = b"[" + b" " * (1 << 20) + b"]"
    assert _post_without_length(client, big).status_code == send(client, big).status_code == 413
    counts = state.store.counts()
    assert counts["notifications"] == 2 and counts["incidents"] == 1 and counts["runs"] == 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'canary_guard_webhook_rejected_total{reason="invalid_notification"} 4.0' in metrics
    assert 'canary_guard_webhook_rejected_total{reason="too_large"} 2.0' in metrics
    assert 'canary_guard_webhook_notifications_total{status="firing"} 2.0' in metrics


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_on_alerts_are_405(make, method):
    client, state = make()
    resp = client.open("/alerts", method=method, headers=AUTH)
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"
    assert resp.get_json()["error"] == "method_not_allowed"
    assert state.store.counts()["notifications"] == 0


def test_an_unexpected_store_failure_is_a_500_and_records_nothing(make, monkeypatch):
    client, state = make()

    def broken(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(state.store, "record", broken)
    resp = send(client, notification(alert(action="page")))
    assert resp.status_code == 500 and resp.get_json()["error"] == "internal_server_error"


def test_a_repeated_first_seen_resolution_is_a_duplicate(make):
    client, _ = make()
    first = send(client, notification(alert(status="resolved"))).get_json()["alerts"][0]
    again = send(client, notification(alert(status="resolved"))).get_json()["alerts"][0]
    assert (first["new"], first["duplicate"]) == (True, False)
    assert (again["new"], again["duplicate"]) == (False, True)
    (incident,) = client.get("/api/incidents").get_json()["incidents"]
    assert incident["deliveries"] == 2 and incident["resolved_at"] is not None


def test_concurrent_notifications_are_visible_to_a_fresh_connection_at_reply(make):
    import threading

    client, state = make(cooldown="0s")  # 30 firings of one alert: not coalesced here
    db = state.config.db
    problems: list[str] = []

    def deliver(t: int) -> None:
        conn = sqlite3.connect(db)
        for k in range(20):
            i = (t * 20 + k) % 30  # 30 incidents, each delivered several times across threads
            resp = send(client, notification(alert(action="page", fingerprint=f"{i:04x}")))
            if resp.status_code != 200:
                problems.append(f"HTTP {resp.status_code}")
                continue
            reply = resp.get_json()
            nid, (a,) = reply["notification"], reply["alerts"]
            seen = conn.execute("SELECT COUNT(*) FROM alerts WHERE notification_id = ? AND incident_id = ?",
                                (nid, a["incident"])).fetchone()[0]
            run = conn.execute("SELECT COUNT(*) FROM runs WHERE incident_id = ?",
                               (a["incident"],)).fetchone()[0]
            if seen != 1 or run != 1:
                problems.append(f"notification {nid}: alert rows {seen}, runs {run} at reply")

    threads = [threading.Thread(target=deliver, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    counts = state.store.counts()
    assert counts["notifications"] == counts["alerts"] == 120
    assert counts["incidents"] == counts["runs"] == 30


def test_prune_drops_old_repeat_deliveries_but_keeps_incidents_and_dedupe(make):
    client, state = make()
    store, db = state.store, state.config.db
    for _ in range(3):  # one incident, three deliveries
        assert send(client, notification(alert(action="page"))).status_code == 200
    drain(state)
    conn = sqlite3.connect(db)
    count = lambda table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
    assert (count("notifications"), count("alerts"), count("incidents")) == (3, 3, 1)
    assert store.prune(time.time() - 3600) == 0  # nothing is older than an hour
    assert store.prune(time.time() + 1) == 2  # the repeats go; the opening delivery stays
    assert (count("notifications"), count("alerts"), count("incidents")) == (1, 1, 1)
    # the incident is still known: another delivery of it is a duplicate and runs nothing
    reply = send(client, notification(alert(action="page"))).get_json()
    assert reply["alerts"][0]["duplicate"] is True
    drain(state)
    assert len(runs(client, action="page")) == 1


def test_plan_retention_defaults_to_30_days_and_0_disables():
    from canary_guard.plan import load_plan

    assert load_plan().webhook.retention == 30 * 86400
    assert parse_plan(plan_data(retention="0s")).webhook.retention == 0


# -- per-step state: a run taken over after its process died ---------------------------------


def _die_mid_step(state, step: int, name: str, kind: str, done: list | None = None):
    """Claim the queued run as a process would, start attempt ``step``, then "die": the lease
    is left to run out. Returns the run."""
    store = state.store
    run = store.claim(lease=1)
    if done:
        store.progress(run.id, step, done)
    store.start_attempt(run.id, step, name, kind, 1, {"argv": ["kubectl"]} if kind == "kubectl_rollback"
                        else {"method": "POST"})
    return run


def _features(sandbox):
    import httpx

    status = httpx.get(f"{sandbox}/elite/system-status", timeout=10).json()
    return sorted(n for n, f in status["features"].items() if not f["enabled"])


def test_taken_over_emergency_rollback_never_redoes_kubectl_but_still_disables(make, kubectl, sandbox):
    client, state = make(plan_data(sandbox))
    send(client, notification(alert(action="emergency_rollback", alertname="CanaryPIIExposure")))
    run = _die_mid_step(state, 0, "rollback", "kubectl_rollback")
    drain(state)  # another worker, later: the lease has run out
    assert kubectl_calls(kubectl) == []  # kubectl undo, in doubt, is not done again
    assert _features(sandbox) == sorted(parse_plan(plan_data()).features())  # PII stops being served
    by_id = {r["id"]: r for r in runs(client)}
    taken = by_id[run.id]
    assert taken["status"] == "needs_review" and taken["taken_over"] == 1
    assert [(a["action"], a["outcome"]) for a in taken["attempts"]] == [
        ("rollback", "interrupted"), ("disable_all_features", "ok")]
    assert [s["outcome"] for s in taken["steps"]] == ["interrupted", "ok"]
    assert "not safe to repeat" in taken["attempts"][0]["detail"]
    (page,) = [r for r in by_id.values() if r["escalated_from"] == run.id]
    assert page["status"] == "succeeded" and "rollback" in page["cause"]
    assert client.get("/healthz").get_json()["needs_review"] == 1


def test_taken_over_feature_disable_is_done_again(make, kubectl, sandbox):
    client, state = make(plan_data(sandbox))
    send(client, notification(alert(action="disable_feature", endpoint="graph_neural")))
    run = _die_mid_step(state, 0, "disable_feature", "disable_feature")
    drain(state)
    (done,) = runs(client)
    assert done["id"] == run.id and done["status"] == "succeeded" and done["taken_over"] == 1
    assert [a["outcome"] for a in done["attempts"]] == ["interrupted", "ok"]
    assert "safe to repeat" in done["attempts"][0]["detail"]
    assert _features(sandbox) == ["graph_neural_networks"]


def test_a_step_that_finished_before_the_crash_is_never_redone(make, kubectl, sandbox):
    client, state = make(plan_data(sandbox))
    send(client, notification(alert(action="emergency_rollback", alertname="CanaryPIIExposure")))
    store = state.store
    run = store.claim(lease=1)
    aid = store.start_attempt(run.id, 0, "rollback", "kubectl_rollback", 1, {"argv": ["kubectl"]})
    store.finish_attempt(aid, "ok", False, "exit 0")
    store.progress(run.id, 1, [{"step": "rollback", "outcome": "ok", "attempts": 1}])
    drain(state)  # died between the steps
    assert kubectl_calls(kubectl) == []
    (done,) = runs(client)
    assert done["status"] == "succeeded" and [s["outcome"] for s in done["steps"]] == ["ok", "ok"]
    assert len(_features(sandbox)) == len(parse_plan(plan_data()).features())


def test_the_worker_takes_the_most_urgent_run_first(make, kubectl):
    client, state = make()
    send(client, notification(alert(action="page", fingerprint="p1", alertname="A")))
    send(client, notification(alert(action="page", fingerprint="p2", alertname="B")))
    send(client, notification(alert(action="rollback", fingerprint="r", alertname="C")))
    state.worker.run_once()
    done = [r for r in runs(client) if r["status"] != "queued"]
    assert [r["action"] for r in done] == ["rollback"]
    assert {r["action"]: r["priority"] for r in runs(client)} == {"rollback": 1, "page": 3}


def test_flapping_alert_pages_once(make):
    # issue 10: twenty firings of one flapping alert (a new startsAt each) are one incident
    client, state = make()
    replies = [send(client, notification(alert(action="page", alertname="CanaryLatencyHigh",
                                               starts_at=f"2024-05-01T12:{k:02d}:00Z"))).get_json()
               for k in range(20)]
    first = replies[0]["alerts"][0]
    assert first["run_status"] == "queued" and first["coalesced_into"] is None
    assert all(r["alerts"][0]["coalesced_into"] == first["incident"] and r["alerts"][0]["run"] is None
               for r in replies[1:])
    drain(state)
    assert [r["action"] for r in runs(client)] == ["page"]
    (incident,) = client.get("/api/incidents").get_json()["incidents"]
    assert incident["firings"] == 20
    assert len(client.get("/api/incidents?merged=1").get_json()["incidents"]) == 20
    assert "canary_guard_webhook_coalesced_total 19.0" in client.get("/metrics").get_data(as_text=True)


# -- input hardening -----------------------------------------------------------------------------


def test_one_instant_written_three_ways_is_one_incident(make, kubectl):
    client, state = make(cooldown="0s")  # not coalescing: the key alone must match
    for written in ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000000000Z", "2024-05-01T14:00:00+02:00"):
        assert send(client, notification(alert(starts_at=written))).status_code == 200
    drain(state)
    (incident,) = client.get("/api/incidents").get_json()["incidents"]
    assert incident["deliveries"] == 3 and incident["starts_at"] == "2024-05-01T12:00:00Z"
    assert len(kubectl_calls(kubectl)) == 1


@pytest.mark.parametrize("starts_at", ["2024-02-30T00:00:00Z", "2024-05-01T24:00:00Z",
                                       "2024-05-01T12:00:00+25:00", "0001-01-01T00:00:00+01:00"])
def test_impossible_times_are_400(make, starts_at):
    client, state = make()
    resp = send(client, notification(alert(starts_at=starts_at)))
    assert resp.status_code == 400 and resp.get_json()["detail"].startswith("alerts[0].startsAt")
    assert state.store.counts()["notifications"] == 0


def _raw(template: str) -> bytes:
    """A notification whose JSON text has ``@@`` replaced by raw escape text (e.g. \\ud800)."""
    body = json.dumps(notification(alert(action="page", fingerprint="FP", summary="SUM")))
    return body.replace('"FP"', template.split("|")[0]).replace('"SUM"', template.split("|")[1]) \
        .encode()


BAD_TEXT = {
    "label value": ('"fp1"|"x"', '"endpoint": "edge_ai"', '"endpoint": "edge\\ud800"', "labels.endpoint"),
    "label name": ('"fp2"|"x"', '"endpoint": "edge_ai"', '"\\udfff": "edge_ai"', "labels (a name)"),
    "annotation": ('"fp3"|"x"', '"summary": "CanaryErrorRateHigh on edge_ai"', '"summary": "\\ud83d"',
                   "annotations.summary"),
    "fingerprint": ('"\\ud800fp"|"x"', "", "", "fingerprint"),
    "receiver": ('"fp4"|"x"', '"receiver": "canary-guard"', '"receiver": "cg\\udc00"', "receiver"),
    "NUL in a label": ('"fp5"|"x"', '"endpoint": "edge_ai"', '"endpoint": "edge\\u0000ai"',
                       "labels.endpoint"),
    "NUL in groupKey": ('"fp6"|"x"', '"groupKey": "{}:{alertname=\\"CanaryErrorRateHigh\\"}"',
                        '"groupKey": "\\u0000"', "groupKey"),
}


@pytest.fixture(params=["sqlite", "postgres"])
def any_backend(request, tmp_path):
    """The database for make(db=...): a SQLite path or a PostgreSQL URL."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "any.db")


@pytest.mark.parametrize("case", sorted(BAD_TEXT))
def test_lone_surrogates_and_nul_are_400_naming_the_field(make, any_backend, case):
    client, state = make(db=any_backend)
    ids, old, new, field = BAD_TEXT[case]
    body = _raw(ids).decode().replace(old, new, 1).encode() if old else _raw(ids)
    resp = send(client, body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    err = resp.get_json()
    assert err["error"] == "invalid_notification" and field in err["detail"], err
    assert state.store.counts()["notifications"] == 0


@pytest.mark.parametrize("body", [
    b'{"receiver": "\xff\xfe", "status": "firing", "alerts": []}',  # not UTF-8
    json.dumps(notification()).encode("utf-16"),  # JSON, but not in UTF-8
    b'{"receiver": "\xed\xa0\x80", "status": "firing", "alerts": []}',  # a surrogate encoded in UTF-8
    b"\xef\xbb\xbf" + json.dumps(notification()).encode(),  # a byte-order mark
])
def test_bodies_that_are_not_utf8_json_are_400(make, any_backend, body):
    client, state = make(db=any_backend)
    resp = send(client, body)
    assert resp.status_code == 400 and resp.get_json()["error"] == "malformed_json"
    assert state.store.counts()["notifications"] == 0


def test_any_real_unicode_is_stored_and_read_back(make, any_backend):
    client, state = make(db=any_backend)
    labels = {"summary": "ставка ошибок 🔥 エラー率 — ∞", "owner": "zoë@example"}
    reply = send(client, notification(alert(action="page", fingerprint="ü", **labels)))
    assert reply.status_code == 200
    (run,) = runs(client)
    assert run["incident"]["fingerprint"] == "ü"
    raw = state.store.actions()[0]
    assert raw["incident"]["fingerprint"] == "ü"


_any_char = hs.characters(codec=None, categories=None)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=hs.text(_any_char, min_size=1, max_size=6), value=hs.text(_any_char, max_size=12),
       fingerprint=hs.text(_any_char, min_size=1, max_size=8))
def test_fuzz_any_code_point_is_200_or_400_never_500(make, key, value, fingerprint):
    client, state = _fuzz_app(make)
    labels = {"alertname": "Fuzz", "action": "page", key: value}
    body = json.dumps(notification({**alert(action="page"), "labels": labels, "fingerprint": fingerprint}))
    resp = send(client, body.encode())
    assert resp.status_code in (200, 400), (resp.status_code, resp.get_data(as_text=True))
    if resp.status_code == 400:
        bad = "\x00" in key + value + fingerprint or any(0xD800 <= ord(c) <= 0xDFFF
                                                          for c in key + value + fingerprint)
        assert bad and resp.get_json()["error"] == "invalid_notification"
