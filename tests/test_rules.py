"""The rule generator: renders that promtool and amtool accept, and tests that can fail."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from canary_guard.rules import gates, model, promtest, render, spec, templating, tools
from conftest import CLI, need_binary

from canary_guard import contract
from canary_guard.durations import format_duration
from canary_guard.plan import default_plan_path, load_plan, parse_plan

FILES = {"canary-guard.rules.yml", "canary-guard.rules.test.yml", "prometheusrule.yaml",
         "alertmanager.yml"}


def custom_plan():
    """Other endpoints, a stable+canary pair, other rates and thresholds, a custom trigger."""
    data = yaml.safe_load(default_plan_path().read_text())
    data["name"] = "shop_checkout"
    data["service"] = "shop"
    data["targets"] = [
        {"name": "stable", "url": "http://127.0.0.1:9001"},
        {"name": "canary", "url": "http://127.0.0.1:9002", "guarded": True},
    ]
    data["endpoints"] = [
        {"name": "cart", "path": "/api/cart", "method": "GET", "feature": "new_cart"},
        {"name": "pay", "path": "/api/pay", "body": {"amount": 1}},
        {"name": "search", "path": "/api/search", "method": "GET"},
    ]
    data["probe"] = {"interval": "10s", "timeout": "2s"}
    data["prometheus"] = {"scrape_interval": "5s", "evaluation_interval": "10s", "job": "shop-canary"}
    data["actions"]["disable_feature"]["features"] = "alert"
    data["actions"]["disable_all_features"]["features"] = ["new_cart"]
    trig = {t["name"]: t for t in data["triggers"]}
    trig["error_rate"].update(threshold=0.05, min_probes=30, window="10m")
    trig["latency_high"].update(threshold="400ms")
    trig["latency_sustained"].update(threshold="400ms", **{"for": "2m"})
    trig["availability"].update(threshold=0.99)
    trig["null_streak"].update(threshold=5)
    trig["pii_exposure"].update(threshold=1)
    trig["probes_missing"].update(threshold="1m")
    data["triggers"].append({
        "name": "user_complaints", "kind": "custom", "alert": "CanaryUserComplaints",
        "expr": 'sum(increase(shop_complaints_total{track="canary"}[30m])) > 5',
        "for": "30m", "severity": "warning", "action": "page",
        "summary": "More than 5 user complaints in 30 minutes",
    })
    data["phases"] = [{"name": "ten", "traffic_percent": 10, "duration": "1h",
                       "criteria": {"window": "30m", "avg_latency": "300ms"}},
                      {"name": "all", "traffic_percent": 100, "criteria": {"window": "20m"}}]
    return parse_plan(data, "custom.yaml")


PLANS = {
    "default": load_plan,
    "demo": lambda: load_plan().with_demo_settings(),
    "custom": custom_plan,
}


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, make in PLANS.items():
        d = tmp_path_factory.mktemp(f"render-{name}")
        render.render(make(), d)
        out[name] = d
    return out


def load(d: Path, name: str):
    return yaml.safe_load((d / name).read_text())


def alerts(d: Path) -> list[dict]:
    return [r for g in load(d, "canary-guard.rules.yml")["groups"] for r in g["rules"] if "alert" in r]


# -- promtool and amtool accept every render, and the generated tests pass ----------------


@pytest.mark.parametrize("which", list(PLANS))
def test_promtool_and_amtool_accept_the_render(renders, which):
    need_binary("promtool")
    need_binary("amtool")
    assert {p.name for p in renders[which].iterdir()} == FILES
    steps = tools.check(renders[which])
    assert [s.name for s in steps] == [
        "promtool check rules", "promtool check rules (prometheusrule.yaml spec)",
        "promtool test rules", "amtool check-config",
    ]
    failed = {s.name: s.output for s in steps if not s.ok}
    assert not failed
    tests_ran = next(s for s in steps if s.name == "promtool test rules").output
    assert "SUCCESS" in tests_ran


def test_generated_tests_cover_the_issue_boundaries(renders):
    tests = load(renders["default"], "canary-guard.rules.test.yml")["tests"]
    by_name = {t["name"]: t for t in tests}

    def checks(name):
        return {(c["alertname"], c["eval_time"]): c["exp_alerts"] for c in by_name[name]["alert_rule_test"]}

    # 2.0% does not fire, 2.5% does: 1 error in 50 probes, 1 in 40, in every scrape
    at2 = by_name["CanaryErrorRateHigh: error rate exactly at 2% does not fire"]
    series = {s["series"]: s["values"] for s in at2["input_series"]}
    assert series['canary_probes_total{track="canary",endpoint="continual_learning",outcome="success"}'] \
        .startswith("0+49x")
    assert series['canary_probes_total{track="canary",endpoint="continual_learning",outcome="error"}'] \
        .startswith("0+1x")
    assert list(checks(at2["name"]).values()) == [[]]
    fired = list(checks("CanaryErrorRateHigh: error rate of 2.5% fires").values())[0]
    assert "is 2.5% over the last 18m45s" in fired[0]["exp_annotations"]["description"]
    # 3 nulls in a row do not fire, 4 do
    assert all(v == [] for v in checks("CanaryNullResponseStreak: 3 null responses in a row do not fire")
               .values())
    four = checks("CanaryNullResponseStreak: 4 null responses in a row fire")
    assert [len(v) for v in four.values()] == [0, 1]
    # 4m59s of slow latency does not roll back, 5m does
    sustained = checks("CanaryLatencySustained: 4m59s of slow latency does not fire, 5m does")
    times = sorted(sustained, key=lambda k: k[1])
    (_, before), (_, at) = times[1], times[2]
    assert sustained[times[1]] == [] and len(sustained[times[2]]) == 1
    assert _seconds(at) - _seconds(before) == 1
    # one PII exposure fires
    assert any(len(v) == 1 for v in checks("CanaryPIIExposure: one PII exposure fires").values())
    # a gap pages and rolls nothing back
    for name in ("CanaryProbesMissing: probes stop for 1m15s: page, no rollback",
                 "CanaryProbesMissing: exporter down: page, no rollback"):
        got = checks(name)
        assert any(a == "CanaryProbesMissing" and v for (a, _), v in got.items())
        rollback = {a for (a, _), v in got.items() if a != "CanaryProbesMissing"}
        assert rollback == {"CanaryErrorRateHigh", "CanaryLatencySustained", "CanaryAvailabilityLow",
                            "CanaryNullResponseStreak", "CanaryPIIExposure", "CanaryTrafficErrorRateHigh",
                            "CanaryTrafficLatencySustained", "CanaryTrafficAvailabilityLow"}
        assert all(v == [] for (a, _), v in got.items() if a in rollback)
    # stable breaches roll nothing back; disabled 503s are not errors
    assert all(v == [] for v in checks(
        "CanaryErrorRateHigh: the same breach on unguarded track stable rolls nothing back").values())
    for alert in ("CanaryErrorRateHigh", "CanaryAvailabilityLow"):
        assert f"{alert}: disabled feature continual_learning answering 503 does not count" in by_name
    # user traffic: 1 failure in 20 requests never rolls back; a traffic breach on stable neither;
    # feature-flag 503s are not failures; traffic alerts are labelled source="traffic"
    sparse = by_name["CanaryTrafficErrorRateHigh: 1 failed request in 20 (< min_requests 50) does not fire"]
    ts = {s["series"]: s["values"] for s in sparse["input_series"]}
    sel = ('recoveryos_requests_total{endpoint="continual_learning",version="2.4.1",env="production",'
           'track="canary",job="recoveryos",status="%s"}')
    assert ts[sel % "success"] == "0+1x19 19" and ts[sel % "error"] == "0+0x19 1"
    assert list(checks(sparse["name"]).values()) == [[]]
    fired = list(checks("CanaryTrafficErrorRateHigh: error rate of user traffic of 2.5% fires").values())[0]
    assert fired[0]["exp_labels"]["source"] == "traffic"
    assert all(v == [] for v in checks("CanaryTrafficErrorRateHigh: the same breach of user traffic on "
                                       "unguarded track stable rolls nothing back").values())
    assert "CanaryTrafficErrorRateHigh: feature_disabled failures of user traffic do not count" in by_name
    probe = list(checks("CanaryErrorRateHigh: error rate of 2.5% fires").values())[0]
    assert probe[0]["exp_labels"]["source"] == "probe"


def _seconds(text: str) -> float:
    from canary_guard.durations import parse_duration

    return parse_duration(text)


# -- structure -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", list(PLANS))
def test_every_alert_has_the_contract_labels_and_annotations(renders, which):
    plan = PLANS[which]()
    # canary-guard's own alerts (CanaryGuard*) are checked in tests/test_notify.py
    rules = [r for r in alerts(renders[which]) if not r["alert"].startswith(contract.OWN_ALERT_PREFIX)]
    assert {r["alert"] for r in rules} == {t.alert for t in plan.triggers}
    for r in rules:
        assert {"severity", "trigger", "action"} <= set(r["labels"]), r["alert"]
        assert r["labels"]["action"] in plan.actions
        assert set(r["annotations"]) >= {"summary", "description", "runbook_url"}
        assert r["annotations"]["runbook_url"] == f"{plan.runbook_url}#{r['alert'].lower()}"
        kind = next(t.kind for t in plan.triggers if t.name == r["labels"]["trigger"])
        if r["labels"].get("reason") not in ("exporter_down", "absent") and kind != "custom":
            assert "{{ $value |" in r["annotations"]["description"], r["alert"]
        if r["labels"]["action"] != "page":
            # rollback alerts watch guarded tracks only: never the stable baseline
            assert 'track=~"canary"' in r["expr"] and "stable" not in r["expr"], r
        assert "max_alerts" not in (renders[which] / "alertmanager.yml").read_text()


def test_default_alerts_match_the_issue(renders):
    rules = {(r["alert"], r["labels"].get("reason")): r for r in alerts(renders["default"])}
    err = rules[("CanaryErrorRateHigh", None)]
    assert "track_endpoint:canary_probe_error_ratio:ratio_rate18m45s" in err["expr"]
    assert "> 0.02" in err["expr"] and ">= 50" in err["expr"] and "for" not in err
    assert rules[("CanaryLatencySustained", None)]["for"] == "5m"
    assert rules[("CanaryLatencySustained", None)]["labels"]["action"] == "rollback"
    assert rules[("CanaryLatencyHigh", None)]["labels"]["action"] == "page"
    avail = rules[("CanaryAvailabilityLow", None)]["expr"]
    assert "track:canary_probe_availability:ratio_rate7m30s" in avail and ">= 200" in avail
    assert "max_over_time(canary_probe_null_streak" in rules[("CanaryNullResponseStreak", None)]["expr"]
    pii = rules[("CanaryPIIExposure", None)]
    assert pii["labels"]["severity"] == "critical" and pii["labels"]["action"] == "emergency_rollback"
    missing = [r for (a, _), r in rules.items() if a == "CanaryProbesMissing"]
    assert {r["labels"]["reason"] for r in missing} == {"exporter_down", "stale", "absent"}
    assert all(r["labels"]["action"] == "page" for r in missing)
    assert 'up{job="canary-guard"} == 0' in rules[("CanaryProbesMissing", "exporter_down")]["expr"]


def test_recording_rule_names_follow_the_contract():
    plan = load_plan()
    names = spec.recording_names(plan)
    for win in plan.windows():
        W = format_duration(win)
        for level in ("track_endpoint", "track"):
            for base in ("canary_probes:rate", "canary_probes_success:rate", "canary_probes_error:rate",
                         "canary_probes_null:rate", "canary_probe_error_ratio:ratio_rate",
                         "canary_probe_availability:ratio_rate",
                         "canary_probe_duration_seconds:avg_rate", "canary_probe_duration_seconds:p95_rate",
                         "canary_probe_duration_seconds:p99_rate"):
                assert f"{level}:{base}{W}" in names
    assert "track:canary_phase_gate:ok" in names and "track:canary_phase_gate:all_ok" in names
    assert all(re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", n) for n in names)
    gate_rules = [r for r in gates.gate_rules(plan) if r.labels]
    assert {(r.labels["phase"], r.labels["criterion"]) for r in gate_rules} == {
        (ph.name, c) for ph in plan.phases for c in gates.CRITERIA
    }


@pytest.mark.parametrize("which", list(PLANS))
def test_templates_render_exactly_the_specs(renders, which):
    plan = PLANS[which]()
    expected = []
    for g in spec.build_groups(plan):
        rules = []
        for r in g.rules:
            if isinstance(r, model.RecordingRule):
                labels = {"labels": r.labels} if r.labels else {}
                rules.append({"record": r.record, "expr": r.expr, **labels})
            else:
                rules.append({"alert": r.alert, "expr": r.expr,
                              **({"for": format_duration(r.for_)} if r.for_ else {}),
                              "labels": r.labels, "annotations": r.annotations})
        expected.append({"name": g.name, "interval": format_duration(g.interval), "rules": rules})
    assert load(renders[which], "canary-guard.rules.yml") == {"groups": expected}
    crd = load(renders[which], "prometheusrule.yaml")
    assert crd["apiVersion"] == "monitoring.coreos.com/v1" and crd["kind"] == "PrometheusRule"
    assert crd["spec"] == {"groups": expected}
    assert re.fullmatch(r"[a-z0-9-]+", crd["metadata"]["name"])


def test_alertmanager_routes_actions_to_the_webhook(renders):
    plan = load_plan()
    am = load(renders["default"], "alertmanager.yml")
    route = am["route"]
    assert route["group_by"] == ["alertname", "track", "endpoint", "action"]
    assert route["group_interval"] == "1m" and route["repeat_interval"] == "4h"
    fast = route["routes"][0]
    assert fast["group_wait"] == "10s" and fast["receiver"] == "canary-guard-webhook"
    hook = next(r for r in am["receivers"] if r["name"] == "canary-guard-webhook")["webhook_configs"][0]
    assert hook == {
        "url": plan.alertmanager.webhook_url, "send_resolved": True,
        "http_config": {"authorization": {"type": "Bearer",
                                          "credentials_file": plan.alertmanager.credentials_file}},
    }
    amtool = need_binary("amtool")

    def receiver(*labels):
        out = subprocess.run([amtool, "config", "routes", "test", "--config.file",
                              str(renders["default"] / "alertmanager.yml"), *labels],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip()

    # the webhook first; the plan's people (notify section) hear about it too (tests/test_notify.py)
    people = "canary-guard-slack,canary-guard-email"
    assert receiver("alertname=CanaryErrorRateHigh", "action=rollback") == "canary-guard-webhook," + people
    assert receiver("alertname=CanaryPIIExposure", "action=emergency_rollback") == (
        "canary-guard-webhook," + people)
    assert receiver("alertname=CanaryLatencyHigh", "action=page") == "canary-guard-webhook," + people
    assert receiver("alertname=SomethingElse") == "canary-guard-unrouted"
    demo = load(renders["demo"], "alertmanager.yml")
    assert demo["route"]["routes"][0]["group_wait"] == "1s"


# -- the generated tests can fail ----------------------------------------------------------


def _only(d: Path, out: Path, test_name: str) -> None:
    """Copy a render, keeping one generated test case."""
    out.mkdir()
    for f in FILES:
        (out / f).write_text((d / f).read_text())
    doc = load(d, "canary-guard.rules.test.yml")
    doc["tests"] = [t for t in doc["tests"] if t["name"] == test_name]
    assert doc["tests"], test_name
    (out / "canary-guard.rules.test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))


def _promtool_test(d: Path) -> subprocess.CompletedProcess:
    return subprocess.run([need_binary("promtool"), "test", "rules", "canary-guard.rules.test.yml"],
                          cwd=d, capture_output=True, text=True, check=False)


MUTATIONS = [
    # (test case, file, original, mutated): each mutation must make that case fail
    ("CanaryErrorRateHigh: error rate exactly at 2% does not fire", "canary-guard.rules.yml",
     "> 0.02\n", ">= 0.02\n"),
    ("CanaryErrorRateHigh: error rate of 2.5% fires", "canary-guard.rules.test.yml",
     "is 2.5% over", "is 2.6% over"),
    ("CanaryLatencySustained: 4m59s of slow latency does not fire, 5m does", "canary-guard.rules.yml",
     "for: 5m", "for: 4m"),
    ("CanaryAvailabilityLow: disabled feature continual_learning answering 503 does not count",
     "canary-guard.rules.yml", 'canary_probes_total{outcome!="disabled"}', "canary_probes_total"),
    ("CanaryNullResponseStreak: 3 null responses in a row do not fire", "canary-guard.rules.yml",
     "[1m]) > 3", "[1m]) > 2"),
    ("CanaryErrorRateHigh: 1 failed probe out of 25 (< min_probes 50) does not fire",
     "canary-guard.rules.yml", ">= 50\n", ">= 5\n"),
    ("CanaryProbesMissing: probes stop for 1m15s: page, no rollback", "canary-guard.rules.yml",
     "canary_probe_last_timestamp_seconds{track=~\"canary|stable\"} > 50",
     "canary_probe_last_timestamp_seconds{track=~\"canary|stable\"} > 500"),
    ("CanaryTrafficErrorRateHigh: 1 failed request in 20 (< min_requests 50) does not fire",
     "canary-guard.rules.yml", ">= 50\n", ">= 5\n"),
    ("CanaryTrafficErrorRateHigh: feature_disabled failures of user traffic do not count",
     "canary-guard.rules.yml", 'error_type=~"feature_disabled"', 'error_type=~"nothing"'),
    ("CanaryTrafficErrorRateHigh: error rate of user traffic of 2.5% fires", "canary-guard.rules.test.yml",
     "is 2.5% over", "is 2.6% over"),
    ("CanaryTrafficAvailabilityLow: availability of user traffic just inside 99.5% does not fire",
     "canary-guard.rules.yml", "< 0.995\n", "< 0.996\n"),
    ("CanaryTrafficLatencySustained: 4m59s of slow user traffic does not fire, 5m does",
     "canary-guard.rules.yml", "for: 5m", "for: 4m"),
    ("phase gates: a healthy canary meets every criterion of every phase", "canary-guard.rules.yml",
     ">= bool 0.999\n", ">= bool 1.5\n"),
]


@pytest.mark.parametrize("case,file,old,new", MUTATIONS, ids=[m[0].split(":")[0] + str(i)
                                                              for i, m in enumerate(MUTATIONS)])
def test_a_mutated_render_fails_its_test(renders, tmp_path, case, file, old, new):
    d = tmp_path / "one"
    # the shipped plan judges its gates over hours: the custom plan's 20m/30m gates run faster
    _only(renders["custom" if case.startswith("phase gates") else "default"], d, case)
    assert _promtool_test(d).returncode == 0  # the case passes as generated ...
    path = d / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))
    result = _promtool_test(d)  # ... and fails once the rule or the expectation is wrong
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


# -- the command ---------------------------------------------------------------------------


def test_cli_render_and_check(tmp_path):
    out = subprocess.run([*CLI, "rules", "render", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, check=True)
    assert {Path(line).name for line in out.stdout.split()} == FILES
    # a broken rule file: check names the failing step and exits 1
    rules = tmp_path / "r" / "canary-guard.rules.yml"
    broken = rules.read_text().replace("sum by (track, endpoint) (rate(", "sum by (track, endpoint (rate(", 1)
    rules.write_text(broken)
    bad = subprocess.run([*CLI, "rules", "check", str(tmp_path / "r")], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "FAIL promtool check rules" in bad.stdout and "ok   amtool check-config" in bad.stdout


def test_cli_check_renders_a_plan_itself(tmp_path):
    plan = tmp_path / "p.yaml"
    plan.write_text(custom_plan().to_yaml())
    ok = subprocess.run([*CLI, "rules", "check", "--plan", str(plan)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "4/4 steps passed" in ok.stdout


def test_missing_tools_say_how_to_install(monkeypatch, renders):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(tools, "docker_answers", lambda: False)
    steps = tools.check(renders["default"])
    assert [s.ok for s in steps] == [False, False]
    assert all("apt-get install prometheus prometheus-alertmanager" in s.output for s in steps)


def test_docker_fallback_argv(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/nonexistent")
    argv = tools.tool("promtool", tmp_path, use_docker=True)
    assert argv[:3] == ["docker", "run", "--rm"] and "prom/prometheus" in argv
    assert argv[argv.index("--entrypoint") + 1] == "promtool"


# -- Prometheus's template functions, as the expected annotations use them -----------------


@pytest.mark.parametrize("fn,value,text", [
    (templating.humanize_percentage, 0.025, "2.5%"),
    (templating.humanize_percentage, 0.99375, "99.38%"),
    (templating.humanize_duration, 1.25, "1.25s"),
    (templating.humanize_duration, 0.5, "500ms"),
    (templating.humanize_duration, 75, "1m 15s"),
    (templating.humanize_duration, 3725, "1h 2m 5s"),
    (templating.humanize, 4, "4"),
    (templating.humanize, 1500, "1.5k"),
    (templating.humanize, 0.0123, "12.3m"),
])
def test_template_functions(fn, value, text):
    assert fn(value) == text


def test_series_notation():
    assert promtest.encode([0, 1, 2, 3, 3, None, None, 5]) == "0+1x3 3 _x2 5"
    assert promtest.encode(promtest.cumulative([49] * 4)) == "0+49x4"


def test_custom_trigger_is_rendered_verbatim():
    plan = custom_plan()
    t = next(t for t in plan.triggers if t.kind == "custom")
    (rule,) = spec.alert_rules(plan, t)
    assert rule.expr == t.expr and rule.for_ == 1800
    assert rule.labels == {"severity": "warning", "trigger": "user_complaints", "action": "page"}
    assert rule.annotations["summary"] == "More than 5 user complaints in 30 minutes"
