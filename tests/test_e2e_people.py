"""End to end, people in the loop: a failed feature disable reaches Slack and e-mail through a
real Alertmanager, stays until an operator decides in a real browser, and "roll back now" runs
exactly one ``kubectl rollout undo`` recorded with the operator's name.

The demo's stack (canary_guard.demo.stack) at demo timings, with the shipped plan changed: the
null-streak trigger disables the endpoint's feature (instead of rolling back), the service lacks
the feature-flag route (the disable answers 404: the issue's scenario), and no availability
trigger (nulls would make it roll back first).
Chromium is Debian's, driven by Playwright (never `playwright install`).
"""

from __future__ import annotations

import shutil
import time

import httpx
import pytest
import yaml
from canary_guard.demo.stack import Stack, missing_binaries

from canary_guard import contract
from canary_guard.plan import default_plan_path, parse_plan

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
ENDPOINT = "edge_ai"
REACH = 30.0  # the bound: failure to both sinks, at demo timings


def people_plan():
    data = yaml.safe_load(default_plan_path().read_text())
    # null answers also lower the track's availability: its rollback would take the cooldown
    # the operator's "roll back now" needs (which the cooldown then rightly refuses)
    data["triggers"] = [t for t in data["triggers"] if t["name"] != "availability"]
    for t in data["triggers"]:
        if t["name"] == "null_streak":
            t["action"] = "disable_feature"
    data["actions"]["disable_feature"]["path"] = "/elite/config/no-such-route"
    return parse_plan(data, "people plan")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if missing_binaries():
        pytest.fail(f"{', '.join(missing_binaries())} not found: run scripts/install-debs first")
    st = Stack(people_plan(), tmp_path_factory.mktemp("people"))
    try:
        st.start()
    except Exception:
        st.stop()
        raise
    yield st
    st.stop()


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def failed_disable(stack):
    for run in stack.actions():
        if run["action"] == "disable_feature" and run["status"] == "failed":
            return run
    return None


def escalation_active(stack):
    return [a for a in stack.alertmanager_alerts()
            if a["labels"].get("alertname") == contract.ALERT_ACTION_FAILED
            and a["status"]["state"] == "active"]


def test_failed_disable_reaches_people_stays_and_an_operator_rolls_back_in_a_browser(stack):
    if not shutil.which(CHROMIUM.rsplit("/", 1)[-1]) and not shutil.which(CHROMIUM):
        pytest.fail("chromium not found: run scripts/install-debs (Debian's chromium)")
    from playwright.sync_api import sync_playwright

    stack.inject({"endpoint": ENDPOINT, "mode": "null", "rate": 1.0})
    try:
        run = wait_for(lambda: failed_disable(stack), 90, "the disable_feature run to fail (404)")
        assert "HTTP 404" in (run["reason"] or "") + str(run["attempts"])
        failed_at = run["finished_at"]

        def reached(sink):
            return sink.wait_for(lambda m: contract.ALERT_ACTION_FAILED in m.title and "FIRING" in m.title,
                                 timeout=0)

        slack = wait_for(lambda: reached(stack.slack), REACH + 10, "CanaryGuardActionFailed on Slack")
        mail = wait_for(lambda: reached(stack.smtp), REACH + 10, "CanaryGuardActionFailed by e-mail")
        for msg in (slack, mail):
            print(f"failed action -> {msg.channel}: {msg.received_at - failed_at:.1f}s")  # -s shows it
            assert msg.received_at - failed_at <= REACH, (msg.channel, msg.received_at - failed_at)
            assert f"Endpoint: {ENDPOINT}" in msg.text and "Track: canary" in msg.text
            assert "disable_feature" in msg.text and "HTTP 404" in msg.text
            assert "Incident: " + stack.webhook_url in msg.text
        assert slack.channel == "slack " + stack.plan.notify.slack.channel
        # it stays: still active in Alertmanager well after it reached people, nothing resolved it
        time.sleep(8)
        assert escalation_active(stack)
        assert not [m for m in stack.slack.messages if m.title.startswith("[RESOLVED")
                    and contract.ALERT_ACTION_FAILED in m.title]

        # without credentials: 401 for the page and the API
        for path in ("/", "/api/actions", "/api/incidents", "/api/review"):
            assert httpx.get(stack.webhook_url + path, timeout=10).status_code == 401, path

        undo_before = [c for c in stack.kubectl_calls() if c["argv"][:2] == ["rollout", "undo"]]
        user, password = stack.operator
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page()
                resp = page.goto(stack.webhook_url + "/")
                assert resp.status == 401 and page.locator("#sign-in").is_visible()
                page.fill("#username", user)
                page.fill("#password", password)
                page.click("#sign-in")
                page.wait_for_selector("#failed-banner")
                row = page.locator("tr.need.failed").first
                assert ENDPOINT in row.inner_text()
                html = page.content()
                for secret in (stack.webhook_token, stack.service_key, stack.smtp_password, password,
                               stack.slack.url):
                    assert secret not in html
                row.locator("textarea[name=note]").fill("feature route missing on this build")
                row.locator("button[value=rollback]").click()
                page.wait_for_selector("#flash")
                assert "rollback recorded" in page.locator("#flash").inner_text()
                # the decision with who and why, in the page's audit trail
                def in_trail():
                    page.reload()
                    return page.locator(".trail .operator", has_text=user).count() > 0

                wait_for(in_trail, 20, "the decision in the page's audit trail")
                html = page.content()
                for secret in (stack.webhook_token, stack.service_key, stack.smtp_password, password):
                    assert secret not in html
            finally:
                browser.close()

        def undone():
            calls = [c for c in stack.kubectl_calls() if c["argv"][:2] == ["rollout", "undo"]]
            return calls if len(calls) > len(undo_before) else None

        wait_for(undone, 30, "kubectl rollout undo")
        time.sleep(2)  # a second undo, were there one, would be recorded by now
        calls = [c for c in stack.kubectl_calls() if c["argv"][:2] == ["rollout", "undo"]]
        assert len(calls) - len(undo_before) == 1
        runs = [r for r in stack.actions() if "decided by demo (page): rollback" in (r.get("cause") or "")]
        assert len(runs) == 1 and runs[0]["status"] == "succeeded"
        assert runs[0]["attempts"][0]["command"]["argv"][1:3] == ["rollout", "undo"]

        # the decision resolves the escalation: people hear it is over
        wait_for(lambda: not escalation_active(stack), 30, "CanaryGuardActionFailed to end")
        wait_for(lambda: stack.slack.wait_for(lambda m: m.title.startswith("[RESOLVED")
                                              and contract.ALERT_ACTION_FAILED in m.title, timeout=0),
                 30, "the RESOLVED message on Slack")
        assert httpx.get(stack.webhook_url + "/healthz", timeout=10).json()["status"] == "ok"
    finally:
        stack.clear_faults()
