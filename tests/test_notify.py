"""The plan's notify section: validation, Alertmanager receivers and routes (amtool), and real
delivery from a real Alertmanager to a Slack-compatible sink and an SMTP server."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from canary_guard.demo.sinks import SlackSink, SmtpSink
from canary_guard.rules import notify, render
from conftest import free_port, need_binary

from canary_guard.contract import ALERT_ACTION_FAILED
from canary_guard.plan import PlanError, load_plan, parse_plan


def plan_dict() -> dict:
    return yaml.safe_load(load_plan().to_yaml())


def with_notify(section: dict) -> dict:
    d = plan_dict()
    d["notify"] = section
    return d


def problems_of(data: dict) -> list[str]:
    with pytest.raises(PlanError) as err:
        parse_plan(data)
    return err.value.problems


# -- the plan ------------------------------------------------------------------------------------


def test_shipped_plan_tells_the_deployment_plans_channel_and_address():
    n = load_plan().notify
    assert n.slack.channel == "#recoveryos-alerts"
    assert n.email.to == ["engineering@recoveryos.app"]
    assert all(Path(p).is_absolute() for p in n.secret_files())
    # the plan round-trips, "from" included
    assert parse_plan(yaml.safe_load(load_plan().to_yaml())).notify == n


@pytest.mark.parametrize("section, expected", [
    ({"slack": {"channel": "#x", "api_url": "https://hooks.slack.com/services/T/B/x"}},
     "notify.slack: api_url: secrets are never written in the plan; put it in a file that "
     "Alertmanager can read and name that file in api_url_file"),
    ({"slack": {"channel": "#x", "api_url_file": "https://hooks.slack.com/services/T/B/x"}},
     "notify.slack.api_url_file: this looks like the secret itself, not a file path"),
    ({"slack": {"channel": "#x", "api_url_file": "secrets/slack"}},
     "notify.slack.api_url_file: must be an absolute path"),
    ({"slack": {"channel": "recoveryos", "api_url_file": "/s"}}, "notify.slack.channel: must be #channel"),
    ({"email": {"to": ["a@b.co", "nobody"], "from": "c@d.co", "smarthost": "mail:25"}},
     "notify.email.to[1]: 'nobody' is not an e-mail address"),
    ({"email": {"to": "a@b.co", "from": "c@d.co", "smarthost": "mail"}},
     "notify.email.smarthost: must be HOST:PORT"),
    ({"email": {"to": "a@b.co", "from": "c@d.co", "smarthost": "mail:25", "password": "hunter2"}},
     "notify.email: password: secrets are never written in the plan"),
    ({"email": {"to": "a@b.co", "from": "c@d.co", "smarthost": "mail:25", "auth_username": "u"}},
     "notify.email: auth_username and auth_password_file go together"),
    ({"pagerduty": {"routing_key": "abc"}}, "notify.pagerduty: routing_key: secrets are never written"),
    ({"webhooks": [{"name": "bot", "url": "https://user:pw@chat.example/hook"}]},
     "notify.webhooks[0].url: must not carry user info"),
    ({"webhooks": [{"name": "bot", "url": "https://chat.example/hook?key=s3cret"}]},
     "notify.webhooks[0].url: must not carry a query string"),
    ({"webhooks": [{"name": "bot", "url": "https://a.example/"}, {"name": "bot", "url": "https://b.example/"}]},
     "notify.webhooks[1].name: 'bot' repeats notify.webhooks[0]"),
    ({"slack": {"channel": "#x", "api_url_file": "/s", "severities": ["urgent"]}},
     "notify.slack.severities[0]"),
])
def test_bad_notify_sections_are_named_by_field(section, expected):
    got = problems_of(with_notify(section))
    assert any(p.startswith(expected) for p in got), got


def test_secrets_in_the_plan_are_never_echoed_back():
    secret = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    got = "\n".join(problems_of(with_notify({"slack": {"channel": "#x", "api_url_file": secret}})))
    assert "XXXXSECRET" not in got


def test_trigger_alert_names_may_not_take_canary_guards_own_prefix():
    d = plan_dict()
    d["triggers"][0]["alert"] = "CanaryGuardErrors"
    assert any(p.startswith("triggers[0].alert: names starting with 'CanaryGuard'")
               for p in problems_of(d))


# -- receivers and routing ---------------------------------------------------------------------


def render_config(plan, tmp: Path) -> Path:
    path = tmp / "alertmanager.yml"
    path.write_text(render.render_all(plan)[render.ALERTMANAGER_FILE])
    return path


def routes_test(config: Path, *labels: str) -> list[str]:
    out = subprocess.run([need_binary("amtool"), "config", "routes", "test", "--config.file",
                          str(config), *labels], capture_output=True, text=True, check=False)
    return out.stdout.strip().split(",")


def full_plan(**overrides):
    section = {
        "slack": {"channel": "#recoveryos-alerts", "api_url_file": "/etc/am/slack"},
        "email": {"to": ["engineering@recoveryos.app"], "from": "guard@recoveryos.app",
                  "smarthost": "smtp.recoveryos.app:587", "auth_username": "guard",
                  "auth_password_file": "/etc/am/smtp"},
        "pagerduty": {"routing_key_file": "/etc/am/pd"},
        "webhooks": [{"name": "chatops", "url": "https://chat.example/hook",
                      "credentials_file": "/etc/am/chat", "severities": ["critical"]}],
    }
    section.update(overrides)
    return parse_plan(with_notify(section))


def test_receivers_use_alertmanagers_own_integrations_and_amtool_accepts_them(tmp_path):
    plan = full_plan()
    config = render_config(plan, tmp_path)
    out = subprocess.run([need_binary("amtool"), "check-config", str(config)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    by_name = {r["name"]: r for r in yaml.safe_load(config.read_text())["receivers"]}
    slack = by_name["canary-guard-slack"]["slack_configs"][0]
    assert slack["api_url_file"] == "/etc/am/slack" and slack["channel"] == "#recoveryos-alerts"
    mail = by_name["canary-guard-email"]["email_configs"][0]
    assert mail["auth_password_file"] == "/etc/am/smtp" and mail["require_tls"] is True
    assert mail["to"] == "engineering@recoveryos.app"
    assert by_name["canary-guard-pagerduty"]["pagerduty_configs"][0]["routing_key_file"] == "/etc/am/pd"
    hook = by_name["canary-guard-webhook-chatops"]["webhook_configs"][0]
    assert hook["http_config"]["authorization"]["credentials_file"] == "/etc/am/chat"
    # no secret field holds anything but a path
    text = config.read_text()
    for field in ("api_url:", "auth_password:", "routing_key:", "service_key:"):
        assert field not in text


def test_routing_rollbacks_reach_webhook_and_people_critical_reaches_pagerduty(tmp_path):
    config = render_config(full_plan(), tmp_path)
    people = ["canary-guard-slack", "canary-guard-email"]
    # a rollback: the webhook acts, and people hear about it; critical also pages PagerDuty
    assert routes_test(config, "alertname=CanaryErrorRateHigh", "action=rollback", "severity=critical",
                       "track=canary", "endpoint=edge_ai") == [
        "canary-guard-webhook", *people, "canary-guard-webhook-chatops", "canary-guard-pagerduty"]
    assert routes_test(config, "alertname=CanaryPIIExposure", "action=emergency_rollback",
                       "severity=critical")[0] == "canary-guard-webhook"
    # a page (warning): the webhook records it for review, people are told, PagerDuty is not
    assert routes_test(config, "alertname=CanaryLatencyHigh", "action=page", "severity=warning") == [
        "canary-guard-webhook", *people]
    # canary-guard's own alerts go to people and never to the webhook (it would re-run the action)
    assert routes_test(config, f"alertname={ALERT_ACTION_FAILED}", "action=disable_feature",
                       "severity=critical", "run=7") == [
        *people, "canary-guard-webhook-chatops", "canary-guard-pagerduty"]
    assert routes_test(config, "alertname=CanaryGuardWebhookDown", "severity=critical") == [
        *people, "canary-guard-webhook-chatops", "canary-guard-pagerduty"]
    # alerts that are not canary-guard's stay out
    assert routes_test(config, "alertname=NodeDown", "action=rollback", "severity=critical") == [
        "canary-guard-unrouted"]


def test_each_alert_reaches_the_webhook_once(tmp_path):
    config = yaml.safe_load(render_config(full_plan(), tmp_path).read_text())
    hooks = [r for r in config["route"]["routes"] if r["receiver"] == render.RECEIVER]
    assert len(hooks) == 2
    assert 'action!~"emergency_rollback|rollback"' in hooks[1]["matchers"]


def test_without_a_notify_section_only_the_webhook_is_routed(tmp_path):
    d = plan_dict()
    del d["notify"]
    plan = parse_plan(d)
    assert notify.receivers(plan) == [] and notify.routes(plan) == []
    config = render_config(plan, tmp_path)
    assert routes_test(config, "alertname=CanaryErrorRateHigh", "action=rollback") == ["canary-guard-webhook"]


# -- delivery through a real Alertmanager --------------------------------------------------------


def start_alertmanager(procs, config: Path, data: Path) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs.start([shutil.which("prometheus-alertmanager") or need_binary("prometheus-alertmanager"),
                 f"--config.file={config}", f"--storage.path={data}",
                 f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}",
                 "--cluster.listen-address="], "alertmanager", ready_url=f"{url}/-/ready", timeout=30)
    return url


def post_alerts(am: str, alerts: list[dict]) -> None:
    req = urllib.request.Request(f"{am}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=5).read()


def test_real_alertmanager_delivers_to_slack_and_smtp_with_what_a_person_needs(procs, tmp_path):
    slack = SlackSink().start()
    smtp = SmtpSink(username="guard@recoveryos.app", password="smtp-pass-123").start()
    try:
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "slack").write_text(slack.url + "\n")
        # Alertmanager 0.25 sends the password file byte for byte: no trailing newline
        (secrets / "smtp").write_text("smtp-pass-123")
        d = with_notify({
            "slack": {"channel": "#recoveryos-alerts", "api_url_file": str(secrets / "slack")},
            "email": {"to": ["engineering@recoveryos.app"], "from": "guard@recoveryos.app",
                      "smarthost": smtp.smarthost, "require_tls": False,
                      "auth_username": "guard@recoveryos.app",
                      "auth_password_file": str(secrets / "smtp")},
        })
        d["alertmanager"].update({"group_wait": "0s", "group_interval": "1s"})
        plan = parse_plan(d)
        am = start_alertmanager(procs, render_config(plan, tmp_path), tmp_path / "am-data")
        now = datetime.now(UTC)
        post_alerts(am, [{
            "labels": {"alertname": "CanaryErrorRateHigh", "severity": "critical", "trigger": "error_rate",
                       "action": "rollback", "track": "canary", "endpoint": "edge_ai"},
            "annotations": {
                "summary": "edge_ai on canary: error rate above 2%",
                "description": "The error rate of edge_ai on canary is 35% over the last 1m15s.",
                "value": "35%",
                "webhook_action": "rollback: kubectl rollout undo deployment/recoveryos -n recoveryos",
                "runbook_url": "https://example.test/runbook.md#canaryerrorratehigh",
            },
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat(),
        }])
        got = {}
        for name, sink in (("slack", slack), ("email", smtp)):
            msg = sink.wait_for(lambda m: "CanaryErrorRateHigh" in m.title, timeout=30)
            assert msg is not None, f"nothing reached the {name} sink: {procs.log('alertmanager')[-2000:]}"
            got[name] = msg
        for name, msg in got.items():
            for needed in ("FIRING: CanaryErrorRateHigh (critical)", "Track: canary", "Endpoint: edge_ai",
                           "Measured: 35%", "edge_ai on canary: error rate above 2%",
                           "Webhook action: rollback: kubectl rollout undo deployment/recoveryos",
                           "Runbook: https://example.test/runbook.md#canaryerrorratehigh"):
                assert needed in msg.text, (name, needed, msg.text)
            assert msg.title.startswith("[FIRING:1] CanaryErrorRateHigh on canary"), msg.title
        assert got["slack"].channel == "slack #recoveryos-alerts"
        assert got["email"].raw["to"] == ["engineering@recoveryos.app"]
        assert smtp.auth_failures == 0  # the password came from the file, through AUTH
        # resolved: people hear that too
        post_alerts(am, [{
            "labels": {"alertname": "CanaryErrorRateHigh", "severity": "critical", "trigger": "error_rate",
                       "action": "rollback", "track": "canary", "endpoint": "edge_ai"},
            "annotations": {"summary": "edge_ai on canary: error rate above 2%"},
            "startsAt": now.isoformat(), "endsAt": datetime.now(UTC).isoformat(),
        }])
        for sink in (slack, smtp):
            assert sink.wait_for(lambda m: m.title.startswith("[RESOLVED]"), timeout=30), sink.messages
    finally:
        slack.stop()
        smtp.stop()
