"""The plan's traffic section and the PromQL a plan carries: names checked as Prometheus names,
every problem named by its field path, custom triggers' expressions parsed by a real parser
(promql-parser) and held to promtool's verdict."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import DATA, need_binary

from canary_guard.plan import PlanError, load_plan, min_requests, parse_plan

CLI = [sys.executable, "-m", "canary_guard"]
REFERENCE = yaml.safe_load((DATA / "recoveryos-reference.yaml").read_text())


def shipped() -> dict:
    return yaml.safe_load(load_plan().to_yaml())


def problems(data: dict) -> list[str]:
    with pytest.raises(PlanError) as err:
        parse_plan(data)
    return err.value.problems


def with_traffic(**fields) -> dict:
    data = shipped()
    data["traffic"].update(fields)
    return data


def traffic_trigger(**fields) -> dict:
    return {"name": "traffic_errors", "kind": "error_rate", "alert": "CanaryTrafficErrors",
            "threshold": 0.02, "action": "rollback", "source": "traffic", **fields}


def test_shipped_traffic_section_names_the_reference_metrics():
    t = load_plan().traffic
    metrics = {m["name"]: m for m in REFERENCE["service_metrics"]}
    assert t is not None
    assert t.requests in metrics and t.status_label in metrics[t.requests]["labels"]
    assert t.duration in metrics and metrics[t.duration]["type"] == "histogram"
    assert t.errors in metrics and t.error_type_label in metrics[t.errors]["labels"]
    assert t.endpoint_label in metrics[t.requests]["labels"]
    # the reference's endpoint label uses the endpoint names: no mapping needed
    assert t.endpoints == {}
    assert {e["name"] for e in REFERENCE["endpoints"]} == {e.name for e in load_plan().endpoints}
    assert t.failure == ["error"]


@pytest.mark.parametrize("field, value, expected", [
    ("requests", "recoveryos-requests",
     "traffic.requests: 'recoveryos-requests' is not a Prometheus metric name"),
    ("requests", "9requests", "traffic.requests: '9requests' is not a Prometheus metric name"),
    ("status_label", "sta:tus", "traffic.status_label: 'sta:tus' is not a Prometheus label name"),
    ("track_label", "__track", "traffic.track_label: '__track': names starting with __"),
    ("track_label", "le", "traffic.track_label: 'le' is a label Prometheus or histograms set"),
    ("endpoint_label", "status", "traffic.endpoint_label: 'status' is also traffic.status_label"),
    ("duration", "recoveryos_request_duration_seconds_bucket",
     "traffic.duration: name the histogram without its suffix: 'recoveryos_request_duration_seconds'"),
    ("pod_label", "app.kubernetes.io/ track", "traffic.pod_label: 'app.kubernetes.io/ track' is not a "
     "Kubernetes label key"),
    ("failure", [], "traffic.failure: List should have at least 1 item"),
    ("failure", ["err\nor"], "traffic.failure[0]: must be one line of printable text"),
    ("endpoints", {"edge": "no_such"}, "traffic.endpoints.edge: no endpoint named 'no_such'"),
    ("endpoints", {"a": "edge_ai", "b": "edge_ai"}, "traffic.endpoints.b: 'edge_ai' is already the "
     "endpoint of 'a'"),
    ("endpoints", {"homomorphic": "edge_ai"}, "traffic.endpoints.homomorphic: 'homomorphic' is another "
     "plan endpoint's name"),
    ("window", "1s", "traffic.window: 1s holds fewer than two scrapes"),
    ("window", "1.5m", "traffic.window"),
    ("colour", "red", "traffic.colour: unknown field"),
])
def test_bad_traffic_fields_are_named_by_path(field, value, expected):
    got = problems(with_traffic(**{field: value}))
    assert any(p.startswith(expected) for p in got), got


def test_ignored_error_types_need_the_error_counter():
    got = problems(with_traffic(errors=None))
    assert any(p.startswith("traffic.ignored_error_types: needs traffic.errors") for p in got), got
    assert parse_plan(with_traffic(errors=None, ignored_error_types=[])).traffic.errors is None


def test_a_traffic_trigger_needs_the_section():
    data = shipped()
    del data["traffic"]
    data["triggers"].append(traffic_trigger())
    n = len(data["triggers"]) - 1
    assert f"triggers[{n}].source: 'traffic' needs the plan's traffic section (the service's request " \
           "metrics)" in problems(data)


@pytest.mark.parametrize("fields, expected", [
    ({"kind": "null_streak", "threshold": 3}, "a null_streak trigger judges probes only"),
    ({"min_probes": 10}, "min_probes: a traffic trigger counts requests: use min_requests"),
    ({"source": "probe", "min_requests": 10}, "min_requests: only for source: traffic"),
])
def test_traffic_triggers_are_the_ratio_and_latency_kinds(fields, expected):
    data = shipped()
    data["triggers"].append(traffic_trigger(**fields))
    n = len(data["triggers"]) - 1
    got = problems(data)
    assert any(p.startswith(f"triggers[{n}].") and expected in p for p in got), got


def test_traffic_latency_needs_the_histogram():
    data = with_traffic(duration=None)
    data["triggers"].append(traffic_trigger(kind="latency_avg", threshold=1))
    n = len(data["triggers"]) - 1
    assert any(p.startswith(f"triggers[{n}].source: a traffic latency trigger needs traffic.duration")
               for p in problems(data))


def test_min_requests_is_derived_like_min_probes_and_windows_come_from_the_section():
    data = shipped()
    data["triggers"] += [traffic_trigger(), traffic_trigger(name="t2", kind="availability",
                                                           threshold=0.995, alert="CanaryTrafficAvail"),
                         traffic_trigger(name="t3", min_requests=80, alert="CanaryTrafficErrors3"),
                         traffic_trigger(name="t4", window="2m", alert="CanaryTrafficErrors4")]
    plan = parse_plan(data)
    t1, t2, t3, t4 = plan.triggers[-4:]
    # 2%: one failure in 50 is exactly the threshold; 1 in 20 (5%) is below the guard
    assert min_requests(plan, t1) == 50
    assert min_requests(plan, t2) == 200
    assert min_requests(plan, t3) == 80
    assert plan.trigger_window(t1) == 300 and plan.trigger_window(t4) == 120
    demo = plan.with_demo_settings()
    assert demo.trigger_window(demo.triggers[-4]) == plan.demo.traffic_window == 10
    # a traffic trigger's window is not bound to the probe rate: 10s holds no two 15s probes
    data["triggers"][-1]["window"] = "1m"
    data["probe"]["interval"] = "1m"
    assert parse_plan(data).trigger_window(parse_plan(data).triggers[-1]) == 60


def test_plan_check_summarises_the_traffic_section(tmp_path):
    data = shipped()
    data["triggers"].append(traffic_trigger())
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    out = subprocess.run([*CLI, "plan", "check", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'traffic:   recoveryos_requests_total{status=~"error"} per endpoint and track' in out.stdout
    line = next(x for x in out.stdout.splitlines() if "CanaryTrafficErrors" in x)
    assert "window=5m" in line and "min_requests=50" in line and "source=traffic" in line


# -- PromQL in the plan --------------------------------------------------------------------------

def custom(expr: str) -> dict:
    data = shipped()
    data["triggers"].append({"name": "complaints", "kind": "custom", "alert": "UserComplaints",
                             "expr": expr, "action": "page"})
    return data


@pytest.mark.parametrize("expr, expected", [
    ("sum(rate(complaints_total[5m]) > 0.1", "not valid PromQL: unclosed left parenthesis"),
    ("rate(complaints_total)",
     "not valid PromQL: expected type matrix in call to function 'rate', got vector"),
    ("nosuch(complaints_total)", "not valid PromQL: unknown function with name 'nosuch'"),
    ("complaints_total >", "not valid PromQL"),
    ('complaints_total{kind=~"("}', "not valid PromQL"),
    ("complaints_total[5m]", "not valid for an alert: it evaluates to a range vector"),
    ('"text"', "not valid for an alert: it evaluates to a string"),
    ("limitk(2, complaints_total)", "limitk: not in Prometheus 2.42"),
    (" ", "empty"),
])
def test_plan_check_names_the_bad_expression(tmp_path, expr, expected):
    data = custom(expr)
    n = len(data["triggers"]) - 1
    got = problems(data)
    assert any(p.startswith(f"triggers[{n}].expr: {expected}") for p in got), got
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    out = subprocess.run([*CLI, "plan", "check", str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"triggers[{n}].expr: " in out.stderr


GOOD = [
    "sum(rate(complaints_total[30m])) > 5",
    'sum by (endpoint) (rate(recoveryos_errors_total{error_type!~"feature_disabled|bad_request"}[5m])) > 1',
    "histogram_quantile(0.99, sum by (le) (rate(recoveryos_request_duration_seconds_bucket[5m]))) > 1",
    "absent_over_time(up{job=\"recoveryos\"}[5m])",
    "(a - b) / b > 0.1 and on (track) c",
    "max_over_time(x[1h:1m] offset 5m) > 3",
    "x unless on (endpoint) y",
    "1",
]
BAD = [
    "sum(rate(x[5m])",
    "rate(x)",
    "x unless on (a) group_left y",
    "{}",
    "x[5m1m]",
    "sum by (le) (x) @ end()",
    "x{__name__=\"y\"}",
    "max_over_time(x[1h:1m]) offset 5m > 3",
]


@pytest.mark.parametrize("expr, ok", [(e, True) for e in GOOD] + [(e, False) for e in BAD])
def test_the_parser_agrees_with_promtool(tmp_path, expr, ok):
    """promql-parser reads as Prometheus 2.42 does: promtool loads the same expression in a rule."""
    promtool = need_binary("promtool")
    rules = tmp_path / "r.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": expr}]}]}))
    res = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert (res.returncode == 0) == ok, res.stdout + res.stderr
    data = custom(expr)
    if ok:
        assert parse_plan(data).triggers[-1].expr == expr
    else:
        assert any(p.startswith(f"triggers[{len(data['triggers']) - 1}].expr: ") for p in problems(data))
