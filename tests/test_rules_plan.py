"""Plan checks the rule generator relies on: triggers that can never fire or always fire."""

from __future__ import annotations

import pytest
import yaml

from canary_guard.plan import PlanError, default_plan_path, load_plan, parse_plan


def raw():
    return yaml.safe_load(default_plan_path().read_text())


def trigger(data, name):
    return next(t for t in data["triggers"] if t["name"] == name)


def index(data, name):
    return next(i for i, t in enumerate(data["triggers"]) if t["name"] == name)


def problems(data) -> str:
    with pytest.raises(PlanError) as err:
        parse_plan(data, "t.yaml")
    return "\n".join(err.value.problems)


def test_shipped_plan_passes_and_its_triggers_are_reachable():
    plan = load_plan()
    assert plan.trigger_warnings() == []


def test_min_probes_that_never_fit_the_window_names_field_and_numbers():
    data = raw()
    trigger(data, "error_rate").update(min_probes=100, window="18m45s")
    i = index(data, "error_rate")
    text = problems(data)
    assert (f"triggers[{i}].min_probes: min_probes is 100 but the 18m45s window holds at most 75 "
            "probes of one endpoint at probe.interval 15s, so this trigger never fires; set window "
            "to at least 25m or lower min_probes") in text


def test_window_too_short_for_the_derived_min_probes():
    data = raw()
    trigger(data, "availability").update(window="1m")  # 40 probes of 10 endpoints < 200
    i = index(data, "availability")
    text = problems(data)
    assert f"triggers[{i}].window: min_probes is 200 but the 1m window holds at most 40 probes" in text
    assert "of the track's 10 endpoints" in text and "at least 5m" in text


def test_min_probes_that_fit_exactly_are_fine():
    data = raw()
    trigger(data, "error_rate").update(min_probes=75, window="18m45s")
    parse_plan(data, "t.yaml")


def test_rate_window_needs_two_scrapes():
    data = raw()
    trigger(data, "pii_exposure").update(window="20s")
    i = index(data, "pii_exposure")
    assert (f"triggers[{i}].window: 20s holds fewer than two scrapes at prometheus.scrape_interval 15s: "
            "rate() needs two samples, so this trigger never fires; use at least 30s") in problems(data)


def test_pii_for_longer_than_its_window_never_fires():
    data = raw()
    trigger(data, "pii_exposure").update({"for": "5m", "window": "1m"})
    i = index(data, "pii_exposure")
    assert f"triggers[{i}].for: 5m is not shorter than the window 1m" in problems(data)


def test_probes_missing_threshold_inside_a_probe_cycle_always_fires():
    data = raw()
    trigger(data, "probes_missing").update(threshold="20s")
    i = index(data, "probes_missing")
    text = problems(data)
    assert f"triggers[{i}].threshold: 20s is not above one probe cycle" in text
    assert "= 35s" in text and "always fires" in text


@pytest.mark.parametrize("kind,threshold,word", [("error_rate", 0, "always fires"),
                                                  ("error_rate", 1, "never fires"),
                                                  ("availability", 1, "always fires"),
                                                  ("availability", 0, "never fires")])
def test_ratio_thresholds_out_of_range(kind, threshold, word):
    data = raw()
    trigger(data, kind)["threshold"] = threshold
    assert word in problems(data)


def test_latency_threshold_at_or_above_the_timeout_is_flagged():
    data = raw()
    data["probe"]["timeout"] = "1s"
    plan = parse_plan(data, "t.yaml")
    warnings = plan.trigger_warnings()
    assert len(warnings) == 2  # latency_high and latency_sustained
    assert "threshold: 1s is not below probe.timeout (1s)" in warnings[0]
