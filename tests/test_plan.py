import copy
import subprocess
import sys

import pytest
import yaml

from canary_guard.durations import format_duration, parse_duration
from canary_guard.plan import PlanError, default_plan_path, load_plan, parse_plan


def raw():
    return yaml.safe_load(default_plan_path().read_text())


def problems(data):
    with pytest.raises(PlanError) as err:
        parse_plan(data, "t.yaml")
    return err.value.problems


def test_shipped_plan_has_the_ten_elite_endpoints(plan):
    assert len(plan.endpoints) == 10
    assert plan.guarded_tracks() == ["canary"]
    assert {t.alert for t in plan.triggers} >= {
        "CanaryErrorRateHigh", "CanaryLatencyHigh", "CanaryLatencySustained",
        "CanaryAvailabilityLow", "CanaryNullResponseStreak", "CanaryPIIExposure",
        "CanaryProbesMissing",
    }
    assert [p.traffic_percent for p in plan.phases] == [5, 10, 25, 50, 100]


@pytest.mark.parametrize("text,seconds", [("15s", 15), ("5m", 300), ("1h30m", 5400),
                                          ("800ms", 0.8), (2, 2.0)])
def test_durations_round_trip(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(parse_duration(text))) == seconds


@pytest.mark.parametrize("bad", ["", "5", "5 m", "m5", "-1s", "1.5x"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_errors_name_the_field():
    data = raw()
    data["endpoints"][3]["path"] = "elite/x"
    data["probe"]["interval"] = "soon"
    data["triggers"][0]["action"] = "nuke"
    data["endpoints"][1]["surprise"] = 1
    out = problems(data)
    text = "\n".join(out)
    assert "endpoints[3].path: must start with /" in text
    assert "probe.interval:" in text and "not a duration" in text
    assert "endpoints[1].surprise: unknown field" in text


def test_cross_field_errors_name_the_field():
    data = raw()
    data["triggers"][0]["action"] = "nuke"
    data["endpoints"][2]["name"] = data["endpoints"][0]["name"]
    text = "\n".join(problems(data))
    assert "triggers[0].action: 'nuke' is not defined in actions" in text
    assert "endpoints[2].name: 'continual_learning' repeats endpoints[0]" in text


@pytest.mark.parametrize("threshold,word", [(1.5, "never fires"), (0, "always fires")])
def test_error_rate_threshold_out_of_range(threshold, word):
    data = raw()
    data["triggers"][0]["threshold"] = threshold
    text = "\n".join(problems(data))
    assert "triggers[0]" in text and word in text


def test_window_shorter_than_scrape_interval():
    data = raw()
    data["triggers"][0]["window"] = "5s"
    text = "\n".join(problems(data))
    assert "triggers[0].window: 5s is shorter than prometheus.scrape_interval (15s)" in text


def test_min_probes_arithmetic(plan):
    err = next(t for t in plan.triggers if t.kind == "error_rate")
    avail = next(t for t in plan.triggers if t.kind == "availability")
    assert plan.min_probes(err) == 50  # 1/50 = 2.0% is not > 2%: one failure never fires
    assert plan.min_probes(avail) == 200
    # the derived window holds 1.5x the needed probes of one endpoint
    assert plan.trigger_window(err) >= 1.5 * 50 * plan.probe.interval
    fast = plan.with_demo_settings()
    assert fast.probe.interval == 1 and fast.trigger_window(err) == 75


def test_budget_warning(plan):
    assert any("total_per_hour" in w for w in plan.budget_warnings())


def test_token_never_in_plan_and_read_from_env(monkeypatch, plan):
    monkeypatch.setenv("RECOVERYOS_API_KEY", "s3cret")
    assert plan.auth.headers() == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in plan.model_dump_json()


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(PlanError) as err:
        load_plan(bad)
    assert "not valid YAML" in err.value.problems[0]
    with pytest.raises(PlanError):
        load_plan(tmp_path / "missing.yaml")


def test_plan_check_cli(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "canary_guard", "plan", "check"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "CanaryErrorRateHigh" in ok.stdout and "10 (" in ok.stdout
    data = copy.deepcopy(raw())
    data["endpoints"][3]["path"] = "nope"
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(data))
    bad = subprocess.run([sys.executable, "-m", "canary_guard", "plan", "check", str(f)],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "endpoints[3].path: must start with /" in bad.stderr


def test_to_yaml_round_trips(plan, tmp_path):
    for p in (plan, plan.with_demo_settings()):
        f = tmp_path / "p.yaml"
        f.write_text(p.to_yaml())
        assert load_plan(f) == p
