"""The recording rules split by who reads them: the alerts' inputs apart from the costly rest."""

from __future__ import annotations

import re

import pytest
import yaml
from canary_guard.rules import recording, render, spec
from canary_guard.rules.names import w

from canary_guard.plan import load_plan

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def groups(plan) -> dict:
    return {g.name.removeprefix(f"canary-guard-{plan.name}-"): g for g in spec.build_groups(plan)}


@pytest.mark.parametrize("demo", [False, True], ids=["shipped", "demo settings"])
def test_the_fast_group_holds_exactly_what_the_alerts_read(demo):
    plan = load_plan().with_demo_settings() if demo else load_plan()
    g = groups(plan)
    fast = {r.record: r.expr for r in g["recording"].rules}
    slow = {r.record: r.expr for r in g["recording-slow"].rules}
    recorded = {**fast, **slow}
    assert not fast.keys() & slow.keys()
    # every rule an alert reads, and every rule those read, is in the fast group ...
    wanted = {n for a in g["alerts"].rules for n in NAME.findall(a.expr) if n in recorded}
    assert wanted and wanted <= fast.keys()
    for expr in fast.values():
        assert {n for n in NAME.findall(expr) if n in recorded} <= fast.keys()
    # ... and nothing else: each fast rule is read by an alert or by another fast rule (a
    # trigger unit's own rules that only dashboards read, e.g. traffic quantiles, are slow)
    read = wanted | {n for e in fast.values() for n in NAME.findall(e)}
    assert fast.keys() <= read
    # a rule reads only rules recorded before it in its group, or in the fast group
    for name, rules in (("recording", g["recording"].rules), ("recording-slow", g["recording-slow"].rules)):
        before = set(fast) if name == "recording-slow" else set()
        for r in rules:
            assert {n for n in NAME.findall(r.expr) if n in recorded} <= before, (name, r.record)
            before.add(r.record)
    # the family is complete, once, and every latency quantile is slow
    family = {r.record for win in spec.windows(plan) for r in recording.window_rules(win)}
    quantiles = {r.record for win in spec.windows(plan) for r in recording.quantile_rules(win)}
    assert family | quantiles <= recorded.keys()
    assert quantiles <= slow.keys()
    # no rule twice (a name may repeat with other labels: one breach record per trigger,
    # latency_high and latency_sustained with the same expression)
    pairs = [(r.record, r.expr, str(r.labels)) for n in ("recording", "recording-slow") for r in g[n].rules]
    assert len(pairs) == len(set(pairs))
    assert {n for n, _, _ in pairs} == recorded.keys()


def test_the_slow_group_runs_less_often_and_the_alert_path_at_the_evaluation_interval():
    plan = load_plan()
    g = groups(plan)
    every = plan.prometheus.evaluation_interval
    assert g["recording-slow"].interval == spec.SLOW_EVERY * every
    assert all(g[n].interval == every for n in ("recording", "gates", "alerts", "self"))


def test_track_rates_sum_the_endpoint_rules(tmp_path):
    plan = load_plan()
    render.render(plan, tmp_path)
    doc = yaml.safe_load((tmp_path / render.RULES_FILE).read_text())
    rules = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    for win in spec.windows(plan):
        for outcome in ("", "_success", "_error", "_null"):
            assert rules[f"track:canary_probes{outcome}:rate{w(win)}"] == \
                f"sum by (track) (track_endpoint:canary_probes{outcome}:rate{w(win)})"
