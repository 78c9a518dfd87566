"""The Grafana dashboard: queries parse (real promtool) and name only metrics that exist."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from canary_guard.dashboard import render as r
from conftest import CLI, need_binary
from promql_names import (
    contract_record_names,
    exporter_metric_names,
    metric_names,
    promtool_check_exprs,
    rule_file_names,
    rules_render,
    substitute,
    unwrap_label_values,
    webhook_metric_names,
)

from canary_guard import contract
from canary_guard.plan import load_plan, parse_plan


@pytest.fixture(scope="module")
def shipped():
    return load_plan()


@pytest.fixture(scope="module")
def dashboard(shipped):
    return r.build_dashboard(shipped)


@pytest.fixture(scope="module")
def known(shipped, tmp_path_factory):
    """What the components expose: the exporter's families, a real webhook's /metrics, the
    recording rules of a fresh `rules render`, and ALERTS (Prometheus's series of the alerts)."""
    tmp = tmp_path_factory.mktemp("known")
    names = exporter_metric_names() | webhook_metric_names(shipped, tmp)
    rendered = rules_render(None, tmp / "rules")
    if rendered is None:  # the rule generator has not landed: the brief's contract
        records, alerts = contract_record_names(shipped), {t.alert for t in shipped.triggers}
    else:
        records, alerts = rule_file_names(rendered / "canary-guard.rules.yml")
    # the triggers' alerts, and canary-guard's own (rules/own.py: the webhook down or failing)
    assert {a for a in alerts if not a.startswith(contract.OWN_ALERT_PREFIX)} == {
        t.alert for t in shipped.triggers}
    return names | records | {"ALERTS"} | rollout_metric_names(shipped, tmp) | service_metric_names()


def service_metric_names() -> set[str]:
    """What the service exposes itself (the sandbox's /metrics, as the reference's)."""
    from canary_guard.sandbox.metrics import ServiceMetrics

    reg = ServiceMetrics(["x"], "v").registry
    return {s.name for family in reg.collect() for s in family.samples} | {
        contract.SERVICE_ERRORS}  # counted on the first failure only


def rollout_metric_names(plan, tmp) -> set[str]:
    """What `canary-guard rollout`'s control port exposes, from its real collector."""
    from canary_guard.rollout.engine import Rollout
    from canary_guard.rollout.server import RolloutCollector
    from canary_guard.rollout.state import StateDir

    engine = Rollout(plan, StateDir(tmp / "rollout"), gate=None)
    engine.open()
    engine.store.unlock()
    return {s.name for family in RolloutCollector(engine).collect() for s in family.samples}


def plain_queries(dashboard) -> list[tuple[str, str]]:
    return [(where, substitute(unwrap_label_values(q))) for where, q in r.queries(dashboard)]


# -- the name extractor itself ---------------------------------------------------------------

@pytest.mark.parametrize("expr, names", [
    ('sum by (track, endpoint) (rate(canary_probes_total{outcome!="disabled"}[5m]))',
     {"canary_probes_total"}),
    ("track:canary_probe_error_ratio:ratio_rate18m45s{track=~\"canary\"} > 0.02",
     {"track:canary_probe_error_ratio:ratio_rate18m45s"}),
    ("time() - canary_probe_last_timestamp_seconds offset 5m", {"canary_probe_last_timestamp_seconds"}),
    ('histogram_quantile(0.95, sum without (le2) (rate(a_bucket{x="sum by (y)"}[1m]))) / on (track) '
     "group_left (z) b", {"a_bucket", "b"}),
    ('{__name__="foo", job="x"} or vector(1e3)', {"foo"}),
    ("count(ALERTS) unless bogus_metric", {"ALERTS", "bogus_metric"}),
])
def test_metric_names_extracts_selected_series(expr, names):
    assert metric_names(expr) == names


# -- every query parses ----------------------------------------------------------------------

@pytest.mark.parametrize("demo", [False, True], ids=["shipped", "demo"])
def test_every_query_parses_with_promtool(shipped, tmp_path, demo):
    need_binary("promtool")
    plan = shipped.with_demo_settings() if demo else shipped
    queries = plain_queries(r.build_dashboard(plan))
    assert len(queries) >= 20
    result = promtool_check_exprs([q for _, q in queries], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_query(tmp_path):
    need_binary("promtool")
    result = promtool_check_exprs(["rate(canary_probes_total[5m]", "sum by (x (y)"], tmp_path)
    assert result.returncode != 0


def test_queries_name_only_exposed_metrics(dashboard, known):
    used: set[str] = set()
    for where, q in plain_queries(dashboard):
        names = metric_names(q)
        assert names, f"{where}: selects no metric: {q}"
        assert names <= known, f"{where}: unknown metric(s) {sorted(names - known)} in {q}"
        used |= names
    # the dashboard covers every signal the issue asks for
    for name in ("canary_probes_total", "canary_probe_null_streak", "canary_probe_pii_exposures_total",
                 "track:canary_phase_gate:ok", "canary_guard_webhook_actions_total",
                 "track_endpoint:canary_probe_duration_seconds:p95_rate1m",
                 "track_endpoint:canary_probe_duration_seconds:p99_rate1m",
                 "track_endpoint:canary_probe_error_ratio:ratio_rate18m45s",
                 "track_endpoint:canary_probe_duration_seconds:avg_rate1m",
                 # the service's own requests beside the probes
                 "track_endpoint:canary_traffic_requests:rate5m",
                 "track_endpoint:canary_traffic_error_ratio:ratio_rate5m",
                 "track_endpoint:canary_traffic_duration_seconds:p99_rate5m", contract.SERVICE_ERRORS):
        assert name in used, name


def test_alerts_queries_only_name_the_plans_alerts(dashboard, shipped):
    alerts = {t.alert for t in shipped.triggers}
    for where, q in plain_queries(dashboard):
        if "ALERTS" in metric_names(q):
            listed = set(q.split('alertname=~"')[1].split('"')[0].split("|"))
            assert listed == alerts, where


# -- panels, thresholds, variables -----------------------------------------------------------

def panel(dashboard, prefix):
    found = [p for p in dashboard["panels"] if p["title"].startswith(prefix)]
    assert len(found) == 1, prefix
    return found[0]


def lines(p):
    return [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None]


def test_slo_and_trigger_thresholds_come_from_the_plan(dashboard):
    assert lines(panel(dashboard, "Error rate per endpoint")) == [0.01, 0.02]
    assert lines(panel(dashboard, "Average latency")) == [0.5, 1.0]
    assert lines(panel(dashboard, "p95 latency")) == [0.5]
    assert lines(panel(dashboard, "p99 latency")) == [1.0]
    assert lines(panel(dashboard, "Success rate trend")) == [0.995, 0.999]
    assert lines(panel(dashboard, "Null response streak")) == [3, 4]
    for title in ("Error rate", "Average latency", "p95", "p99", "Success rate trend"):
        p = panel(dashboard, title)
        assert p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off", title


def test_a_changed_plan_changes_lines_and_windows(shipped):
    data = yaml.safe_load(shipped.to_yaml())
    data["slos"]["p95_latency"] = 0.3
    data["triggers"][0]["threshold"] = 0.05
    data["triggers"][0]["window"] = 600
    d = r.build_dashboard(parse_plan(data))
    assert lines(panel(d, "p95 latency")) == [0.3]
    err = panel(d, "Error rate per endpoint")
    assert lines(err) == [0.01, 0.05]
    assert "ratio_rate10m{" in err["targets"][0]["expr"]


def test_variables_and_datasource(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["track"]["definition"] == "label_values(canary_probes_total, track)"
    assert variables["endpoint"]["definition"].startswith("label_values(canary_probes_total{")
    assert variables["phase"]["query"] == "phase_1,phase_2,phase_3,phase_4,phase_5"
    assert dashboard["schemaVersion"] >= 39
    for p in dashboard["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            if "endpoint" in t["expr"] and "canary_phase_gate" not in t["expr"]:
                assert 'endpoint=~"$endpoint"' in t["expr"], p["title"]


def test_layout_has_unique_ids_and_no_overlap(dashboard):
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))


def test_plan_without_phases_or_triggers_has_no_phase_panels(shipped):
    data = yaml.safe_load(shipped.to_yaml())
    data["phases"] = []
    data["triggers"] = []
    d = r.build_dashboard(parse_plan(data))
    text = json.dumps(d)
    assert "$phase" not in text and "canary_phase_gate" not in text
    assert "phase" not in {v["name"] for v in d["templating"]["list"]}


# -- the command -------------------------------------------------------------------------------

def test_render_command_writes_dashboard_and_provisioning(tmp_path):
    out = tmp_path / "grafana"
    result = subprocess.run([*CLI, "dashboard", "render", "--out", str(out),
                             "--prometheus-url", "http://prom.monitoring:9090"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    d = json.loads((out / r.DASHBOARD_FILE).read_text())
    assert d["uid"] == "canary-guard-recoveryos-elite"
    ds = yaml.safe_load((out / r.DATASOURCE_FILE).read_text())
    assert ds["datasources"][0]["url"] == "http://prom.monitoring:9090"
    assert ds["datasources"][0]["jsonData"]["timeInterval"] == "15s"
    prov = yaml.safe_load((out / r.PROVIDER_FILE).read_text())
    assert prov["providers"][0]["type"] == "file"


def test_render_command_rejects_a_bad_plan(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\n")
    result = subprocess.run([*CLI, "dashboard", "render", "--plan", str(bad), "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "invalid plan" in result.stderr
