"""The demo's parts that need no running stack: scenarios, the derived plan, the stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from canary_guard.demo import scenarios as sc
from canary_guard.demo.stack import KUBECTL_STANDIN, Stack

from canary_guard.plan import DisableFeature, KubectlRollback, default_plan_path, load_plan, parse_plan

CLI = [sys.executable, "-m", "canary_guard"]


@pytest.fixture
def demo_plan():
    return load_plan().with_demo_settings()


def by_name(plan):
    return {s.name: s for s in sc.build(plan)}


def test_every_shipped_trigger_has_a_scenario_with_its_alert_and_action(demo_plan):
    scen = by_name(demo_plan)
    assert list(scen) == [t.name for t in demo_plan.triggers]
    for t in demo_plan.triggers:
        assert (scen[t.name].alert, scen[t.name].action) == (t.alert, t.action)


def test_expected_effects_follow_the_plan_actions(demo_plan):
    scen = by_name(demo_plan)
    assert scen["error_rate"].expected.rollbacks == 1
    assert scen["probes_missing"].expected.rollbacks == 0
    assert scen["probes_missing"].expected.kinds == ["page"]
    pii = scen["pii_exposure"].expected  # emergency_rollback: rollback + disable every feature
    assert pii.rollbacks == 1
    assert pii.features == sorted(demo_plan.features())


def test_availability_fault_stays_under_the_error_rate_threshold(demo_plan):
    avail = by_name(demo_plan)["availability"]
    err = next(t for t in demo_plan.triggers if t.kind == "error_rate")
    per_endpoint = {}
    for f in avail.faults:
        assert f["mode"] == "error"
        per_endpoint[f["endpoint"]] = per_endpoint.get(f["endpoint"], 0) + f.get("count", 10**9)
    assert set(per_endpoint) == {e.name for e in demo_plan.endpoints}
    # with the window holding at least min_probes probes, these failures do not exceed 2%
    assert max(per_endpoint.values()) / demo_plan.min_probes(err) <= err.threshold


def test_ratio_scenarios_wait_for_their_minimum_probes(demo_plan):
    scen = by_name(demo_plan)
    assert scen["error_rate"].warmup >= 50 * demo_plan.probe.interval
    assert scen["availability"].warmup >= 200 / len(demo_plan.endpoints) * demo_plan.probe.interval
    assert scen["null_streak"].warmup == 0


def plan_with(demo=None, latency_threshold=None):
    data = yaml.safe_load(default_plan_path().read_text())
    data["demo"].update(demo or {})
    for t in data["triggers"]:
        if t["kind"] == "latency_avg" and latency_threshold:
            t["threshold"] = latency_threshold
    return parse_plan(data).with_demo_settings()


def test_latency_fault_lands_between_threshold_and_timeout(demo_plan):
    for plan in (demo_plan, plan_with(latency_threshold="500ms"), plan_with({"probe_timeout": "1200ms"})):
        s = by_name(plan)["latency_high"]
        thr = next(t for t in plan.triggers if t.name == "latency_high").threshold
        assert not s.infeasible
        ms = s.faults[0]["latency_ms"]
        assert thr * 1000 < ms < plan.probe.timeout * 1000


def test_latency_cannot_fire_when_the_timeout_is_not_above_the_threshold():
    plan = plan_with({"probe_timeout": "800ms"})  # 1s threshold: a slow answer is a timeout
    assert "timeout" in by_name(plan)["latency_high"].infeasible
    chosen, notes = sc.select(plan)
    assert "latency_high" not in [s.name for s in chosen]
    assert any("latency_high: cannot run" in n for n in notes)
    with pytest.raises(ValueError, match="timeout"):
        sc.select(plan, "latency_high")


def test_slow_scenarios_are_left_out_unless_asked_for(demo_plan):
    names = [s.name for s in sc.select(demo_plan)[0]]
    assert "latency_sustained" not in names and "latency_high" in names
    assert "latency_sustained" in [s.name for s in sc.select(demo_plan, include_slow=True)[0]]
    assert [s.name for s in sc.select(demo_plan, "latency_sustained")[0]] == ["latency_sustained"]
    with pytest.raises(ValueError, match="no scenario"):
        sc.select(demo_plan, "nope")


def test_derived_plan_points_every_component_at_loopback(tmp_path):
    st = Stack(load_plan(), tmp_path)
    plan = st.derive_plan()
    assert plan.probe.interval == plan.demo.probe_interval
    assert {t.name: t.url for t in plan.targets} == {
        "canary": st.sandbox_url("canary"), "stable": st.sandbox_url("stable")}
    for action in plan.actions.values():
        if isinstance(action, KubectlRollback):
            assert action.kubectl == str(st.kubectl)
        if isinstance(action, DisableFeature):
            assert action.url == st.sandbox_url("canary")
    assert plan.alertmanager.webhook_url == f"{st.webhook_url}/alerts"
    # the derived plan is what every component reads: it must load back unchanged
    path = tmp_path / "p.yaml"
    path.write_text(plan.to_yaml())
    assert load_plan(path) == plan


def test_kubectl_standin_records_argv_and_answers_like_kubectl(tmp_path):
    record = tmp_path / "calls.jsonl"
    script = tmp_path / "kubectl"
    script.write_text(KUBECTL_STANDIN.format(python=sys.executable, record=str(record)))
    script.chmod(0o755)
    argv = ["rollout", "undo", "deployment/recoveryos", "-n", "recoveryos"]
    out = subprocess.run([str(script), *argv], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "deployment.apps/recoveryos rolled back"
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [c["argv"] for c in calls] == [argv]


def test_demo_without_prometheus_says_how_to_install_it(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no prometheus, no alertmanager
    out = subprocess.run([*CLI, "demo", "--scenario", "null_streak"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 1
    assert "apt-get update && apt-get install -y prometheus prometheus-alertmanager" in out.stderr


def test_demo_lists_its_scenarios():
    out = subprocess.run([*CLI, "demo", "--list"], capture_output=True, text=True, timeout=60, check=True)
    assert "CanaryNullResponseStreak" in out.stdout and "emergency_rollback" in out.stdout
