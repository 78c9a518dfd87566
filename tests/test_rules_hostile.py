"""Plan strings cannot change the shape of what the generator writes.

Any text in any free-text field of the plan renders to the same alerts and receivers, and the
files still pass promtool and amtool; fields with a format (environment variable names, URLs,
file paths, the job) either pass their check or are refused with the field's path. The issue's
three reproductions come first: a carriage return in a description that added an alert,
newlines in webhook.token_env that added a receiver, a job that reached PromQL unescaped.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from canary_guard.rules import render, templating
from conftest import need_binary
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from canary_guard.plan import PlanError, default_plan_path, parse_plan

SHIPPED = yaml.safe_load(default_plan_path().read_text())
FREE = 2 + 2 * len(SHIPPED["triggers"])  # service, description, each trigger's summary and description
# what Prometheus may see of plan text: the placeholders plan_text keeps, and escaped braces
ACTIONS = re.compile(r'\{\{ (\$labels\.[A-Za-z_][A-Za-z0-9_]*'
                     r'|\$value( \| (humanize[A-Za-z]*|printf "%\.0f"))?|"\{\{") \}\}')


def rendered(data: dict, out: Path) -> dict:
    plan = parse_plan(data, "hostile.yaml")
    render.render(plan, out)
    return {name: yaml.safe_load((out / name).read_text()) for name in render.FILES}


def alerts(doc: dict) -> list[dict]:
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def shape(files: dict) -> tuple:
    """What plan text must never change: alerts (name, labels), receivers, routes, test names."""
    rules = files[render.RULES_FILE]
    am = files[render.ALERTMANAGER_FILE]
    return (
        [(r["alert"], tuple(sorted(r["labels"].items()))) for r in alerts(rules)],
        [(r["alert"], tuple(sorted(r["labels"].items())))
         for r in alerts(files[render.PROMETHEUSRULE_FILE]["spec"])],
        [r["name"] for r in am["receivers"]],
        [(r["receiver"], r["matchers"]) for r in am["route"]["routes"]],
        [t["name"] for t in files[render.TESTS_FILE]["tests"]],
    )


def tools_accept(d: Path, tests: list[str] | None = None) -> None:
    """promtool check rules (file and PrometheusRule spec), amtool check-config, and promtool
    test rules over the named generated cases (all of them take minutes on a loaded machine)."""
    promtool, amtool = need_binary("promtool"), need_binary("amtool")
    spec = yaml.safe_load((d / render.PROMETHEUSRULE_FILE).read_text())["spec"]
    (d / "spec.rules.yml").write_text(yaml.safe_dump(spec))
    argvs = [[promtool, "check", "rules", render.RULES_FILE, "spec.rules.yml"],
             [amtool, "check-config", render.ALERTMANAGER_FILE]]
    if tests is not None:
        doc = yaml.safe_load((d / render.TESTS_FILE).read_text())
        doc["tests"] = [t for t in doc["tests"] if t["name"] in tests]
        assert len(doc["tests"]) == len(tests)
        (d / "some.test.yml").write_text(yaml.safe_dump(doc))
        argvs.append([promtool, "test", "rules", "some.test.yml"])
    for argv in argvs:
        out = subprocess.run(argv, cwd=d, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{argv[1:]}: {out.stdout}{out.stderr}"


CLEAN = None


def clean_shape(tmp: Path) -> tuple:
    global CLEAN
    if CLEAN is None:
        CLEAN = shape(rendered(copy.deepcopy(SHIPPED), tmp / "clean"))
    return CLEAN


# cases that show plan text and the job the way Prometheus renders and matches them
PROBES = [
    "CanaryPIIExposure: one PII exposure fires",
    "CanaryProbesMissing: probes stop for 1m15s: page, no rollback",
    "CanaryProbesMissing: exporter down: page, no rollback",
]


# -- the reproductions ------------------------------------------------------------


def test_a_carriage_return_in_a_description_adds_no_alert(tmp_path):
    data = copy.deepcopy(SHIPPED)
    injected = ("x\ny\r    - alert: Injected\r      expr: vector(1)\r      annotations:\r"
                "        x: |-\r          z")
    data["triggers"][-1]["description"] = injected
    files = rendered(data, tmp_path)
    assert shape(files) == clean_shape(tmp_path)
    probes = [r for r in alerts(files[render.RULES_FILE]) if r["alert"] == "CanaryProbesMissing"]
    assert {r["annotations"]["description"] for r in probes} == {injected}
    tools_accept(tmp_path)


@pytest.mark.parametrize("field", ["token_env", "service_token_env"])
def test_newlines_in_a_token_env_are_refused_with_the_field(field):
    data = copy.deepcopy(SHIPPED)
    data.setdefault("webhook", {})[field] = "X\n  - name: evil\n    webhook_configs:\n      - url: http://e/\n#"
    with pytest.raises(PlanError) as err:
        parse_plan(data, "t.yaml")
    assert err.value.problems == [
        f"webhook.{field}: {data['webhook'][field]!r} is not an environment variable name "
        "(letters, digits and _, not starting with a digit)"]


def test_a_job_reaches_promql_escaped(tmp_path):
    data = copy.deepcopy(SHIPPED)
    job = 'x"} or vector(1) or up{job="\\'
    data.setdefault("prometheus", {})["job"] = job
    files = rendered(data, tmp_path)
    assert shape(files) == clean_shape(tmp_path)
    down = next(r for r in alerts(files[render.RULES_FILE]) if r["labels"].get("reason") == "exporter_down")
    assert down["expr"] == 'up{job="x\\"} or vector(1) or up{job=\\"\\\\"} == 0'
    # the generated tests feed up{job=<that job>}: the escaped selector matches it exactly
    tools_accept(tmp_path, PROBES)


def test_a_job_with_a_newline_is_refused_with_the_field():
    data = copy.deepcopy(SHIPPED)
    data.setdefault("prometheus", {})["job"] = "canary\nguard"
    with pytest.raises(PlanError) as err:
        parse_plan(data, "t.yaml")
    assert err.value.problems == ["prometheus.job: must be one line of printable text (found U+000A)"]


def test_plan_text_keeps_its_placeholders_and_nothing_else(tmp_path):
    data = copy.deepcopy(SHIPPED)
    pii = next(t for t in data["triggers"] if t["kind"] == "pii_exposure")
    pii["summary"] = "PII on {{$labels.endpoint}}: {{ $value }} {{ query \"up\" }} {{ $labels.nope }}"
    pii["description"] = "{{ $value | humanizePercentage }} {{- printf \"%s\" \"x\" -}} {{"
    files = rendered(data, tmp_path)
    rule = next(r for r in alerts(files[render.RULES_FILE]) if r["alert"] == "CanaryPIIExposure")
    summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
    assert summary == ('PII on {{ $labels.endpoint }}: {{ $value }} {{ "{{" }} query "up" }} '
                       "{{ $labels.nope }}")
    labels = {"endpoint": "edge_ai"}
    assert templating.expand(summary, labels, 1) == 'PII on edge_ai: 1 {{ query "up" }} '
    assert templating.expand(description, labels, 1) == '100% {{- printf "%s" "x" -}} {{'
    tools_accept(tmp_path, PROBES[:1])  # promtool renders them the same way


@pytest.mark.parametrize("value,text", [(0.025, "0.025"), (1e6, "1e+06"), (123456.0, "123456"),
                                        (1234567.0, "1.234567e+06"), (1.5e-5, "1.5e-05"),
                                        (0.0001, "0.0001"), (3.0, "3"), (-2.5, "-2.5"),
                                        (float("nan"), "NaN"), (float("-inf"), "-Inf")])
def test_go_value_prints_floats_as_go_does(value, text):
    assert templating.go_value(value) == text


# -- any string, anywhere --------------------------------------------------------------------


ATOMS = ["\r", "\n", "\r\n", '"', "'", "\\", "{", "}", "{{", "}}", "[", "]", "#", "&", "*", "!",
         "|", ">", "%", "%zz", "@", "`", ":", ": ", "- ", "---", "...", "\t", " ", "\u2028",
         "\u2029", "\x85", "\x00", "\x1b", "\ufeff", "é", "日本", "\U0001F600", "$labels.track",
         "{{ $value }}", '{{ query "up" }}', "{{ $labels.endpoint }}", "\n    - alert: Injected\n",
         '"} or vector(1) or up{job="', "receivers:\n  - name: evil\n"]
HOSTILE = st.one_of(
    st.text(max_size=16),
    st.lists(st.one_of(st.sampled_from(ATOMS), st.text(max_size=3)), min_size=1, max_size=6).map("".join),
)


def printable(h: str) -> str:
    """Half of the values keep only printable characters, so that they pass more checks."""
    return h if len(h) % 2 else "".join(c for c in h if c.isprintable() and not c.isspace())


# fields with a format: a hostile value passes its check or is refused naming the field
CHECKED = {
    "prometheus.job": lambda h: "j" + printable(h),
    "webhook.token_env": lambda h: h,
    "webhook.token_file": lambda h: "/run/secrets/" + h,
    "webhook.service_token_env": lambda h: "SVC" + h,
    "webhook.service_token_file": lambda h: h,
    "alertmanager.webhook_url": lambda h: "http://canary-guard-webhook:9112/" + printable(h),
    "alertmanager.credentials_file": lambda h: "/etc/alertmanager/" + printable(h),
    "runbook_url": lambda h: "https://runbooks.example/canary#" + printable(h),
    "auth.token_env": lambda h: h,
    "auth.token_file": lambda h: h,
}


def put(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    if value is None:
        data.pop(last, None)
    else:
        data[last] = value


# bounded: each example runs promtool and amtool; no shrinking (a raw failing example is
# readable enough, and shrinking one can take many minutes of subprocesses)
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(free=st.lists(HOSTILE, min_size=FREE, max_size=FREE),
       checked=st.lists(HOSTILE, min_size=10, max_size=10))
def test_hostile_strings_change_nothing_but_text(tmp_path_factory, free, checked):
    data = copy.deepcopy(SHIPPED)
    data["service"], data["description"] = free[0], free[1]
    for i, t in enumerate(data["triggers"]):
        t["summary"], t["description"] = free[2 + 2 * i], free[3 + 2 * i]
    for (path, make), h in zip(CHECKED.items(), checked, strict=True):
        put(data, path, make(h))
    try:
        parse_plan(data, "hostile.yaml")
    except PlanError as err:
        # each problem names a checked field; back to the shipped value, the plan is fine
        refused = set()
        for problem in err.problems:
            field = next((f for f in CHECKED if problem.startswith(f + ": ")), None)
            assert field, problem
            refused.add(field)
        for field in refused:
            put(data, field, None)
    out = tmp_path_factory.mktemp("hostile")
    clean = clean_shape(tmp_path_factory.mktemp("clean"))
    files = rendered(data, out)
    assert shape(files) == clean
    for rule in alerts(files[render.RULES_FILE]):
        for text in rule["annotations"].values():
            # plan text reaches Prometheus's template engine only as placeholders or text
            assert "{{" not in ACTIONS.sub("", text), text
    tools_accept(out, PROBES)
