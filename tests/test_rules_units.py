"""The rule generator's units: one per trigger kind, found by kind, extensible without the generator."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from canary_guard.rules import kinds, promtests, render, spec
from canary_guard.rules.cases import Cases
from canary_guard.rules.kinds.base import TriggerUnit
from canary_guard.rules.kinds.latency_avg import LatencyAvg
from canary_guard.rules.model import RecordingRule
from conftest import need_binary
from test_rules import PLANS

from canary_guard.plan import TRIGGER_KINDS, load_plan


def test_every_trigger_kind_has_exactly_one_unit():
    assert set(kinds.UNITS) == set(TRIGGER_KINDS)
    assert all(isinstance(u, TriggerUnit) and kinds.UNITS[u.kind] is u for u in kinds.UNITS.values())
    with pytest.raises(KeyError, match="no rule unit for probe trigger kind 'nope'.*error_rate"):
        kinds.unit("nope")


@pytest.mark.parametrize("which", list(PLANS))
def test_the_recorded_windows_are_the_plans_windows(which):
    # dashboards and the gate read plan.windows(): the generator must record exactly those
    plan = PLANS[which]()
    assert spec.windows(plan) == plan.windows()


def test_every_unit_owns_its_alerts_and_tests():
    plan = load_plan()
    tests = promtests.build_tests(plan)
    for ctx in kinds.contexts(plan):
        rules = ctx.unit.alert_rules(ctx)
        assert rules and all(r.alert == ctx.trigger.alert for r in rules)
        own = [t for t in tests if t.name.startswith(f"{ctx.trigger.alert}: ")]
        cases = Cases(plan, kinds.contexts(plan))
        assert len(own) == len(ctx.unit.test_cases(ctx, cases)) + len(ctx.unit.baseline_cases(ctx, cases))
        assert own, ctx.trigger.kind  # every kind of the shipped plan is pinned by a test


class _Sticky(LatencyAvg):
    """What a later change does: a unit variant that keeps firing and records a rule of its own."""

    def recording_rules(self, ctx):
        return [RecordingRule("track_endpoint:canary_probe_slow:bool_rate1m", "vector(1)")] * 2

    def alert_rules(self, ctx):
        # the alerts read the unit's own rule, which puts it on the alerts' path (spec.alert_inputs)
        return [ctx.alert(f"({r.expr})\nand on () track_endpoint:canary_probe_slow:bool_rate1m > 0", "s", "d",
                          keep_firing_for=120) for r in super().alert_rules(ctx)]


def test_a_unit_extends_the_output_without_touching_the_generator(monkeypatch, tmp_path):
    monkeypatch.setitem(kinds.UNITS, "latency_avg", _Sticky())
    plan = load_plan()
    render.render(plan, tmp_path)
    doc = yaml.safe_load((tmp_path / render.RULES_FILE).read_text())
    recording, _slow, _gates, alerts, _own = (g["rules"] for g in doc["groups"])  # own: rules/own.py
    # the unit's own rule is recorded once, after the shared family (beside the other units' own)
    names = [r["record"] for r in recording]
    assert names.count("track_endpoint:canary_probe_slow:bool_rate1m") == 1
    family = [i for i, n in enumerate(names) if ":canary_trigger:" not in n and "slow" not in n]
    assert names.index("track_endpoint:canary_probe_slow:bool_rate1m") > max(family)
    sticky = [r for r in alerts if r["alert"] in ("CanaryLatencyHigh", "CanaryLatencySustained")]
    assert len(sticky) == 2 and all(r["keep_firing_for"] == "2m" for r in sticky)
    kept_anyway = ("CanaryPIIExposure", plan.shared_cause.alert)  # kept firing by the shipped plan
    assert all("keep_firing_for" not in r for r in alerts
               if r not in sticky and r["alert"] not in kept_anyway)
    out = subprocess.run([need_binary("promtool"), "check", "rules", render.RULES_FILE],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
