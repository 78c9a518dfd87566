"""End to end: the shipped commands, a real Prometheus and a real Alertmanager, on loopback.

One stack for the module (canary_guard.demo.stack): two sandboxes (canary, stable), the
exporter, the webhook, Prometheus with the rendered rules, Alertmanager with the rendered
routing. The tests run in file order on purpose: the clean run doubles as the warm-up that
the ratio triggers' minimum-probe guards need, and each scenario leaves the stack quiet.

The plan is the shipped one with its demo settings, except that latency_sustained holds for
20s instead of 5m, so that the sustained rollback is tested in seconds.
"""

from __future__ import annotations

import signal
import time
import urllib.parse

import pytest
import yaml
from canary_guard.demo import scenarios as sc
from canary_guard.demo import timeline
from canary_guard.demo.stack import Stack, http_get, missing_binaries

from canary_guard.durations import format_duration
from canary_guard.plan import default_plan_path, parse_plan

pytestmark = pytest.mark.e2e

CLEAN_SECONDS = 100.0  # the clean run (also the warm-up: error_rate needs 50 probes per endpoint)
SUSTAINED_FOR = "20s"


def e2e_plan():
    data = yaml.safe_load(default_plan_path().read_text())
    for t in data["triggers"]:
        if t["name"] == "latency_sustained":
            t["for"] = SUSTAINED_FOR
    return parse_plan(data, "e2e plan")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if missing_binaries():
        pytest.fail(f"{', '.join(missing_binaries())} not found: run scripts/install-debs first")
    st = Stack(e2e_plan(), tmp_path_factory.mktemp("e2e"))
    try:
        st.start()
    except Exception:
        st.stop()
        raise
    st.started_at = time.time()
    yield st
    st.stop()


@pytest.fixture(scope="module")
def demo_plan(stack):
    return stack.plan


def scenario(plan, name) -> sc.Scenario:
    return next(s for s in sc.build(plan) if s.name == name)


def new_runs(stack, before: set) -> list[dict]:
    return [a for a in stack.actions() if a["id"] not in before]


def canary_alerts(stack) -> list[dict]:
    return [a for a in stack.prometheus_alerts()
            if a["labels"].get("track", stack.canary_track) == stack.canary_track]


def run_scenario(stack, s: sc.Scenario):
    """Run one scenario; return its result, the runs it produced and the kubectl calls."""
    lines: list[str] = []
    calls0 = len(stack.kubectl_calls())
    runs0 = {a["id"] for a in stack.actions()}
    # alerts kept firing on purpose after their fault (PII: 15m) are not waited for
    kept = frozenset(t.alert for t in stack.plan.triggers if stack.plan.keep_firing_for(t))
    res = timeline.run(stack, s, out=lines.append, lingering=kept)
    log = "\n".join(lines)
    assert res.ok, f"{res.problems}\n{log}\n{stack.tail('webhook')}"
    time.sleep(3)  # resolved notifications arrive; nothing may run for them
    runs = new_runs(stack, runs0)
    calls = stack.kubectl_calls()[calls0:]
    return res, runs, calls, log


def assert_one_run(runs, action: str, log: str) -> dict:
    """Exactly one run of `action` did run; any other run was refused by the cooldown."""
    ran = [r for r in runs if r["status"] in timeline.RAN]
    assert [r["action"] for r in ran] == [action], f"runs: {runs}\n{log}"
    assert ran[0]["status"] == "succeeded", f"{ran[0]}\n{log}"
    others = [r for r in runs if r is not ran[0]]
    assert all(r["status"] == "cooldown" for r in others), f"{others}\n{log}"
    return ran[0]


def assert_rollback_call(calls, plan, log: str) -> None:
    assert len(calls) == 1, f"{calls}\n{log}"
    rb = plan.actions["rollback"]
    argv = calls[0]["argv"]
    assert argv[:3] == ["rollout", "undo", f"deployment/{rb.deployment}"], argv
    assert "-n" in argv and argv[argv.index("-n") + 1] == rb.namespace, argv


def test_stack_is_wired(stack, demo_plan):
    groups = http_get(f"{stack.prometheus_url}/api/v1/rules")["data"]["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert {t.alert for t in demo_plan.triggers} <= alerts, alerts
    deadline = time.time() + 15
    while time.time() < deadline:
        targets = http_get(f"{stack.prometheus_url}/api/v1/targets")["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        time.sleep(0.5)
    assert {t["labels"]["job"] for t in targets if t["health"] == "up"} >= {demo_plan.prometheus.job}
    status = http_get(f"{stack.alertmanager_url}/api/v2/status")
    assert f"{stack.webhook_url}/alerts" in status["config"]["original"]


def test_clean_run_produces_no_action(stack):
    left = stack.started_at + CLEAN_SECONDS - time.time()
    if left > 0:
        time.sleep(left)
    counters = timeline.probe_counters(stack.exporter_metrics(), stack.canary_track)
    assert counters["probes"] >= 10 * 0.8 * CLEAN_SECONDS, counters  # it was probing all along
    assert counters["error"] == counters["null"] == counters["pii"] == 0, counters
    assert canary_alerts(stack) == []
    assert stack.actions() == []
    assert stack.kubectl_calls() == []


def test_stable_breach_rolls_nothing_back(stack, demo_plan):
    trig = next(t for t in demo_plan.triggers if t.kind == "error_rate")
    query = (f"max(track_endpoint:canary_probe_error_ratio:ratio_rate"
             f"{format_duration(demo_plan.trigger_window(trig))}{{track=\"stable\"}})")
    stack.inject({"endpoint": "*", "mode": "error"}, track="stable")
    try:
        deadline, seen = time.time() + 30, 0.0
        while time.time() < deadline and seen <= trig.threshold:
            res = http_get(f"{stack.prometheus_url}/api/v1/query?query={_q(query)}")["data"]["result"]
            seen = float(res[0]["value"][1]) if res else 0.0
            time.sleep(0.5)
        assert seen > trig.threshold, "Prometheus never saw the stable track's errors"
        time.sleep(8)  # several evaluations and a group_wait with the breach in place
        assert [a for a in stack.prometheus_alerts() if a["labels"].get("track") == "stable"] == []
        assert stack.actions() == []
        assert stack.kubectl_calls() == []
    finally:
        stack.clear_faults(track="stable")
    # stable's breach must leave its window before a canary breach can be told from it
    breach = _q('{__name__=~".+:canary_trigger:breach", track="stable"}')
    deadline = time.time() + 180
    while time.time() < deadline and http_get(f"{stack.prometheus_url}/api/v1/query?query={breach}")[
            "data"]["result"]:
        time.sleep(1)


def _q(text: str) -> str:
    return urllib.parse.quote(text)


def test_error_rate_rolls_back_once(stack, demo_plan):
    res, runs, calls, log = run_scenario(stack, scenario(demo_plan, "error_rate"))
    assert "CanaryErrorRateHigh" in res.alerts_seen
    assert_one_run(runs, "rollback", log)
    assert_rollback_call(calls, demo_plan, log)


def test_availability_rolls_back_once(stack, demo_plan):
    res, runs, calls, log = run_scenario(stack, scenario(demo_plan, "availability"))
    assert "CanaryAvailabilityLow" in res.alerts_seen
    # one failure per endpoint stays under the per-endpoint error-rate threshold
    assert "CanaryErrorRateHigh" not in res.alerts_seen, log
    assert_one_run(runs, "rollback", log)
    assert_rollback_call(calls, demo_plan, log)


def test_null_streak_rolls_back_once(stack, demo_plan):
    res, runs, calls, log = run_scenario(stack, scenario(demo_plan, "null_streak"))
    assert "CanaryNullResponseStreak" in res.alerts_seen
    assert_one_run(runs, "rollback", log)
    assert_rollback_call(calls, demo_plan, log)


def test_latency_high_pages_and_does_not_roll_back(stack, demo_plan):
    res, runs, calls, log = run_scenario(stack, scenario(demo_plan, "latency_high"))
    assert "CanaryLatencyHigh" in res.alerts_seen
    run = assert_one_run(runs, "page", log)
    assert run["incident"]["alertname"] == "CanaryLatencyHigh"
    assert calls == [], log


def test_latency_sustained_rolls_back_once(stack, demo_plan):
    s = scenario(demo_plan, "latency_sustained")
    res, runs, calls, log = run_scenario(stack, s)
    assert "CanaryLatencySustained" in res.alerts_seen
    # the sustained alert fires only after its `for`
    assert res.seconds_to_action is not None and res.seconds_to_action >= s.hold, log
    ran = [r for r in runs if r["status"] in timeline.RAN]
    assert sorted(r["action"] for r in ran) == ["page", "rollback"], runs  # LatencyHigh pages first
    assert all(r["status"] == "succeeded" for r in ran), runs
    assert_rollback_call(calls, demo_plan, log)


def test_webhook_killed_while_alert_fires_still_acts_once(stack, demo_plan):
    s = scenario(demo_plan, "null_streak")
    calls0 = len(stack.kubectl_calls())
    runs0 = {a["id"] for a in stack.actions()}
    # 1. the webhook is dead when the alert fires: Alertmanager retries until it is back
    stack.stop_component("webhook", signal.SIGKILL)
    try:
        for fault in s.faults:
            stack.inject(fault)
        deadline = time.time() + 30
        while time.time() < deadline and not any(a["state"] == "firing" for a in canary_alerts(stack)):
            time.sleep(0.2)
        assert any(a["state"] == "firing" for a in canary_alerts(stack)), "no alert fired"
        time.sleep(3)  # Alertmanager tries to deliver and fails
        assert len(stack.kubectl_calls()) == calls0
    finally:
        stack.start_component("webhook")  # same database
    deadline = time.time() + 30
    while time.time() < deadline and len(stack.kubectl_calls()) == calls0:
        time.sleep(0.2)
    assert len(stack.kubectl_calls()) == calls0 + 1, stack.tail("alertmanager")
    # 2. killed again while the alert still fires, after the action: nothing runs twice
    time.sleep(1)
    stack.stop_component("webhook", signal.SIGKILL)
    stack.start_component("webhook")
    time.sleep(6)  # longer than the cooldown: a replayed run would not be refused
    stack.clear_faults()
    deadline = time.time() + 90
    while time.time() < deadline and canary_alerts(stack):
        time.sleep(0.5)
    assert canary_alerts(stack) == []
    time.sleep(3)
    runs = new_runs(stack, runs0)
    calls = stack.kubectl_calls()[calls0:]
    assert_one_run(runs, "rollback", str(runs))
    assert_rollback_call(calls, demo_plan, str(runs))


def test_pii_exposure_rolls_back_and_disables_every_feature_once(stack, demo_plan):
    res, runs, calls, log = run_scenario(stack, scenario(demo_plan, "pii_exposure"))
    assert "CanaryPIIExposure" in res.alerts_seen
    assert_one_run(runs, "emergency_rollback", log)
    assert_rollback_call(calls, demo_plan, log)
    assert res.disabled == sorted(demo_plan.features()), log
    assert stack.disabled_features() == []  # the scenario enabled them again


def test_probes_missing_pages_and_never_rolls_back(stack, demo_plan):
    res, runs, calls, log = run_scenario(stack, scenario(demo_plan, "probes_missing"))
    assert "CanaryProbesMissing" in res.alerts_seen
    ran = [r for r in runs if r["status"] in timeline.RAN]
    assert ran and {r["action"] for r in ran} == {"page"}, f"{runs}\n{log}"
    assert calls == [], log
