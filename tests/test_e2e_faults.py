"""The shipped plan on one real stack: each fault gives exactly the action it should, no more.

One stack for the module (two sandboxes, exporter, webhook, a real Prometheus and Alertmanager,
the demo's settings); the tests run in file order and each leaves the stack quiet:

- a required field turning null, or a body of null, on one canary endpoint: exactly one
  rollback, within 10 s;
- the same fault on the stable track alone: nothing;
- both tracks failing the same endpoint: one page (CanarySharedCause), no rollback;
- one PII exposure while Alertmanager is stopped for 3 minutes: exactly one emergency rollback
  once it is back (last: the PII alert keeps firing for 15 minutes on purpose).
"""

from __future__ import annotations

import time
import urllib.parse

import pytest
from canary_guard.demo.stack import Stack, http_get, missing_binaries

from canary_guard.plan import load_plan

pytestmark = pytest.mark.e2e

CANARY, STABLE = "canary", "stable"
WITHIN = 10.0  # seconds from the fault to the rollback, at the demo's settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if missing_binaries():
        pytest.fail(f"{', '.join(missing_binaries())} not found: run scripts/install-debs first")
    st = Stack(load_plan(), tmp_path_factory.mktemp("faults"))
    try:
        st.start()
    except Exception:
        st.stop()
        raise
    st.started_at = time.time()
    yield st
    st.stop()


def query(stack: Stack, expr: str) -> list[dict]:
    return http_get(f"{stack.prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}",
                    timeout=10)["data"]["result"]


def described(runs: list[dict]) -> list[tuple]:
    """What each run was for, for an assertion message."""
    return [(r["action"], r["status"], (r.get("incident") or {}).get("alertname"),
             (r.get("incident") or {}).get("track"), (r.get("incident") or {}).get("endpoint"),
             (r.get("incident") or {}).get("labels")) for r in runs]


def firing(stack: Stack) -> list[dict]:
    return [a["labels"] for a in stack.prometheus_alerts() if a["state"] == "firing"]


def settle(stack: Stack, timeout: float = 150.0) -> None:
    """Until no alert is active and no trigger records a breach (windows drained)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not stack.prometheus_alerts() and not query(stack, '{__name__=~".+:canary_trigger:breach"}'):
            return
        time.sleep(1)
    raise AssertionError(f"the stack did not settle: {stack.prometheus_alerts()}")


def watch(stack: Stack, seconds: float) -> set[str]:
    """Every alert name seen firing during ``seconds`` (polled every 0.5 s)."""
    seen: set[str] = set()
    end = time.time() + seconds
    while time.time() < end:
        seen |= {lab["alertname"] for lab in firing(stack)}
        time.sleep(0.5)
    return seen


def one_rollback_within(stack: Stack, fault: dict, within: float) -> float:
    runs0, calls0 = {a["id"] for a in stack.actions()}, len(stack.kubectl_calls())
    t0 = time.time()
    stack.inject(fault, track=CANARY)
    deadline = t0 + 60
    while time.time() < deadline and len(stack.kubectl_calls()) == calls0:
        time.sleep(0.05)
    calls = stack.kubectl_calls()[calls0:]
    assert calls, f"no rollback within 60s\n{stack.tail('webhook')}"
    took = calls[0]["time"] - t0
    time.sleep(6)  # longer than the demo's cooldown: a second rollback would have run by now
    stack.clear_faults(track=CANARY)
    calls = stack.kubectl_calls()[calls0:]
    runs = [a for a in stack.actions() if a["id"] not in runs0]
    ran = [r for r in runs if r["status"] in ("succeeded", "partial", "failed")]
    assert len(calls) == 1 and [r["action"] for r in ran] == ["rollback"], described(runs)
    assert calls[0]["argv"][:3] == ["rollout", "undo", "deployment/recoveryos"]
    assert took <= within, f"rollback {took:.1f}s after the fault (goal {within:g}s)"
    settle(stack)
    return took


def test_a_required_field_turning_null_on_one_canary_endpoint_rolls_back_once(stack):
    plan = stack.plan
    ep = plan.endpoint("quantum_crypto")
    took = one_rollback_within(stack, {"endpoint": ep.name, "mode": "null_field",
                                       "field": ep.required_fields[0]}, WITHIN)
    print(f"null field: rollback {took:.2f}s after the fault")


def test_a_null_body_on_one_canary_endpoint_rolls_back_once(stack):
    took = one_rollback_within(stack, {"endpoint": "edge_ai", "mode": "null"}, WITHIN)
    print(f"null body: rollback {took:.2f}s after the fault")


def test_the_same_fault_on_stable_alone_rolls_nothing_back(stack):
    runs0, calls0 = len(stack.actions()), len(stack.kubectl_calls())
    stack.inject({"endpoint": "edge_ai", "mode": "null"}, track=STABLE)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not query(stack, 'track_endpoint:canary_trigger:breach'
                                                          '{track="stable", trigger="null_streak"}'):
            time.sleep(0.5)
        assert query(stack, 'track_endpoint:canary_trigger:breach{track="stable"}'), "stable never breached"
        seen = watch(stack, 10)  # several evaluations and a group_wait with the breach in place
    finally:
        stack.clear_faults(track=STABLE)
    assert seen == set(), seen
    assert len(stack.actions()) == runs0 and len(stack.kubectl_calls()) == calls0
    settle(stack)


def test_both_tracks_failing_the_same_endpoint_page_once_and_roll_nothing_back(stack):
    plan = stack.plan
    # the error-rate and availability triggers judge only once their windows hold min_probes
    trig = next(t for t in plan.triggers if t.kind == "error_rate")
    warm = stack.started_at + plan.trigger_window(trig) + 5 - time.time()
    if warm > 0:
        time.sleep(warm)
    runs0, calls0 = {a["id"] for a in stack.actions()}, len(stack.kubectl_calls())
    fault = {"endpoint": "graph_neural", "mode": "error"}
    for track in (CANARY, STABLE):
        stack.inject(fault, track=track)
    try:
        seen = watch(stack, 25)
    finally:
        for track in (CANARY, STABLE):
            stack.clear_faults(track=track)
    # the windows drain at the same pace on both tracks: still no rollback on the way down
    deadline = time.time() + 150
    while time.time() < deadline and stack.prometheus_alerts():
        seen |= {lab["alertname"] for lab in firing(stack)}
        time.sleep(0.5)
    rollbacks = {t.alert for t in plan.triggers if t.action != "page"}
    assert plan.shared_cause.alert in seen and not (seen & rollbacks), seen
    assert len(stack.kubectl_calls()) == calls0
    runs = [a for a in stack.actions() if a["id"] not in runs0]
    assert [(r["action"], r["incident"]["alertname"]) for r in runs] == [
        ("page", plan.shared_cause.alert)], runs
    assert runs[0]["incident"]["endpoint"] == "graph_neural" and runs[0]["incident"]["track"] == CANARY
    settle(stack)


def test_one_pii_exposure_while_alertmanager_is_down_still_rolls_back_once(stack):
    plan = stack.plan
    runs0, calls0 = {a["id"] for a in stack.actions()}, len(stack.kubectl_calls())
    stack.stop_component("alertmanager")
    try:
        stack.inject({"endpoint": "neuromorphic", "mode": "pii", "count": 1}, track=CANARY)
        deadline = time.time() + 30
        while time.time() < deadline and "CanaryPIIExposure" not in {a["alertname"] for a in firing(stack)}:
            time.sleep(0.5)
        assert "CanaryPIIExposure" in {a["alertname"] for a in firing(stack)}
        time.sleep(180)  # three minutes without Alertmanager: the 1 s window is long gone
        assert "CanaryPIIExposure" in {a["alertname"] for a in firing(stack)}, "the alert did not last"
        assert len(stack.kubectl_calls()) == calls0  # nothing could act meanwhile
    finally:
        stack.start_component("alertmanager")
    back = time.time()
    deadline = back + 120  # Prometheus re-sends active alerts every minute
    while time.time() < deadline and len(stack.kubectl_calls()) == calls0:
        time.sleep(0.5)
    time.sleep(8)
    calls = stack.kubectl_calls()[calls0:]
    runs = [a for a in stack.actions() if a["id"] not in runs0]
    ran = [r for r in runs if r["status"] in ("succeeded", "partial", "failed")]
    assert len(calls) == 1, (calls, runs)
    assert [(r["action"], r["status"]) for r in ran] == [("emergency_rollback", "succeeded")], runs
    assert stack.disabled_features() == sorted(plan.features())
    stack.enable_features(plan.features())
