"""End to end, user traffic: a real Prometheus scraping the sandboxes' own request metrics
(labelled with their track as scraping does in a cluster), simulated users split between the
tracks (``canary-guard traffic``), the rendered traffic triggers, Alertmanager and the webhook.

In file order: healthy traffic on both tracks for minutes raises nothing; 5% errors on one of
the stable track's endpoints roll nothing back; one failed request among 20 of a sparse canary
rolls nothing back; 5% errors on one of the canary's endpoints roll back within 20 s.
"""

from __future__ import annotations

import time
import urllib.parse

import pytest
from canary_guard.demo import scenarios as sc
from canary_guard.demo import timeline
from canary_guard.demo.stack import Stack, http_get, missing_binaries

from canary_guard.plan import load_plan

pytestmark = pytest.mark.e2e

QUIET_SECONDS = 150.0  # healthy users on both tracks: not one alert, pending or firing
WATCH_SECONDS = 25.0  # a breach that must roll nothing back is watched this long
ROLLBACK_WITHIN = 20.0  # the bound at demo settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if missing_binaries():
        pytest.fail(f"{', '.join(missing_binaries())} not found: run scripts/install-debs first")
    st = Stack(load_plan(), tmp_path_factory.mktemp("e2e-traffic"))
    try:
        st.start()
    except Exception:
        st.stop()
        raise
    yield st
    st.stop()


def query(stack, expr: str) -> list[dict]:
    url = f"{stack.prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}"
    return http_get(url)["data"]["result"]


def value(stack, expr: str) -> float | None:
    res = query(stack, expr)
    return float(res[0]["value"][1]) if res else None


def users(stack, **kw) -> None:
    """(Re)start the simulated users with these settings."""
    stack.stop_component("traffic") if "traffic" in stack.components else None
    stack.traffic_args(**kw)
    stack.start_component("traffic")


def no_alerts_while(stack, seconds: float, why: str) -> None:
    """Every second for ``seconds``: no alert at all (pending or firing) and no action."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        alerts = stack.prometheus_alerts()
        assert alerts == [], f"{why}: {[(a['labels'], a['state'], a.get('value')) for a in alerts]}"
        assert stack.actions() == [], why
        time.sleep(1.0)


def wait_for(stack, expr: str, predicate, timeout: float = 40.0) -> float:
    deadline, seen = time.time() + timeout, None
    while time.time() < deadline:
        seen = value(stack, expr)
        if seen is not None and predicate(seen):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{expr} never met the condition (last: {seen})")


def test_healthy_users_on_both_tracks_raise_nothing(stack):
    plan = stack.plan
    users(stack)
    win = "10s"
    # scraping labelled the service's series with the track, and the rules see both tracks' users
    for track in ("canary", "stable"):
        wait_for(stack, f'sum(track_endpoint:canary_traffic_requests:rate{win}{{track="{track}"}})',
                 lambda v: v > 50)
    assert {r["metric"]["job"] for r in query(stack, 'recoveryos_requests_total{track="canary"}')} \
        == {plan.traffic.job}
    no_alerts_while(stack, QUIET_SECONDS, "healthy traffic")
    # the users were there all along: about 100 requests/s per track
    per_track = value(stack, f'sum(track:canary_traffic_requests:rate{win}{{track="canary"}})')
    assert per_track is not None and per_track > 60, per_track


def test_errors_on_stable_roll_nothing_back(stack):
    ep = sc.fault_endpoint(stack.plan)
    stack.inject({"endpoint": ep, "mode": "error", "rate": 0.05}, track="stable")
    try:
        wait_for(stack, f'track_endpoint:canary_traffic_error_ratio:ratio_rate10s'
                        f'{{track="stable",endpoint="{ep}"}}', lambda v: v > 0.02)
        deadline = time.time() + WATCH_SECONDS
        while time.time() < deadline:
            canary = [a for a in stack.prometheus_alerts() if a["labels"].get("track") != "stable"]
            assert canary == [], canary
            assert stack.actions() == [] and stack.kubectl_calls() == []
            time.sleep(1.0)
    finally:
        stack.clear_faults(track="stable")


def test_one_failure_in_twenty_requests_rolls_nothing_back(stack):
    """A sparse canary: 2 requests/s to one endpoint (20 in the 10s window, with the probes'
    one a second: 30), one of them failing: 5% or more, far above 2%, but fewer requests than
    the 50 the guard asks for."""
    ep = sc.fault_endpoint(stack.plan)
    users(stack, rate=4, canary_percent=50, endpoints=[ep])
    ratio = f'track_endpoint:canary_traffic_error_ratio:ratio_rate10s{{track="canary",endpoint="{ep}"}}'
    wait_for(stack, f'track_endpoint:canary_traffic_requests:rate10s{{track="canary",endpoint="{ep}"}}',
             lambda v: v > 2)
    time.sleep(12)  # the other endpoints' users leave the window
    stack.inject({"endpoint": ep, "mode": "error", "count": 1})
    seen = wait_for(stack, ratio, lambda v: v > 0.02)
    requests = value(stack, f'round(track_endpoint:canary_traffic_requests:rate10s'
                            f'{{track="canary",endpoint="{ep}"}} * 10)')
    assert requests is not None and requests < 50, requests
    deadline = time.time() + WATCH_SECONDS
    while time.time() < deadline:
        traffic_alerts = [a for a in stack.prometheus_alerts() if a["labels"].get("source") == "traffic"]
        assert traffic_alerts == [], traffic_alerts
        assert stack.actions() == [] and stack.kubectl_calls() == []
        time.sleep(1.0)
    assert seen > 0.02


def test_five_percent_errors_on_the_canary_roll_back_within_20s(stack):
    plan = stack.plan
    users(stack)  # the demo's users again: 100 requests/s to the canary
    time.sleep(plan.trigger_window(next(t for t in plan.triggers if t.name == "traffic_error_rate")) + 3)
    scenario = next(s for s in sc.build(plan) if s.name == "traffic_error_rate")
    assert scenario.faults[0]["rate"] == 0.05
    lines: list[str] = []
    res = timeline.run(stack, scenario, out=lines.append)
    log = "\n".join(lines)
    assert res.ok, f"{res.problems}\n{log}"
    assert res.action_alert == "CanaryTrafficErrorRateHigh", log
    assert res.seconds_to_action is not None and res.seconds_to_action < ROLLBACK_WITHIN, log
    ran = [a for a in res.actions if a["status"] in timeline.RAN]
    assert ran[0]["incident"]["alertname"] == "CanaryTrafficErrorRateHigh"
    assert res.rollbacks == 1, log
    print(f"5% errors on the canary's {scenario.endpoint}: rollback {res.seconds_to_action:.1f}s after the "
          "fault")
