"""Plan fields with a format: refused with the field's path, accepted in every legitimate form."""

from __future__ import annotations

import copy

import pytest
import yaml

from canary_guard.plan import PlanError, default_plan_path, parse_plan

SHIPPED = yaml.safe_load(default_plan_path().read_text())


def with_value(path: str, value):
    data = copy.deepcopy(SHIPPED)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def problems(path: str, value) -> list[str]:
    with pytest.raises(PlanError) as err:
        parse_plan(with_value(path, value), "t.yaml")
    return err.value.problems


@pytest.mark.parametrize("path,value,message", [
    ("prometheus.job", "a\rb", "must be one line of printable text (found U+000D)"),
    ("prometheus.job", "a\u2028b", "must be one line of printable text (found U+2028)"),
    ("prometheus.job", " job", "must not start or end with whitespace"),
    ("prometheus.job", "", "String should have at least 1 character"),
    ("webhook.token_file", "/run/x\n", "must be one line of printable text (found U+000A)"),
    ("alertmanager.credentials_file", "/etc/a\x00", "must be one line of printable text (found U+0000)"),
    ("auth.token_env", "API-KEY", "'API-KEY' is not an environment variable name"),
    ("webhook.token_env", "1TOKEN", "'1TOKEN' is not an environment variable name"),
    ("auth.header", "X Api Key", "'X Api Key' is not an HTTP token"),
    ("alertmanager.webhook_url", "http://hook/a b", "' ' (character 14) is not allowed in a URL"),
    ("alertmanager.webhook_url", "http://hook/%zz", "'%' (character 13) does not start a %XX escape"),
    ("alertmanager.webhook_url", "http://hook:port/", "Port could not be cast to integer value"),
    ("alertmanager.webhook_url", "ftp://hook/", "must be an http:// or https:// URL"),
    ("alertmanager.webhook_url", "http:///alerts", "must be an http:// or https:// URL"),
    ("runbook_url", "https://wiki/{{ query }}", "'{' (character 14) is not allowed in a URL"),
    ("actions.rollback.namespace", "Prod", "'Prod' is not a Kubernetes namespace"),
    ("actions.rollback.deployment", "web app", "'web app' is not a Kubernetes object name"),
])
def test_a_bad_value_is_refused_with_its_path(path, value, message):
    if path.startswith("actions.rollback") and SHIPPED["actions"]["rollback"]["kind"] != "kubectl_rollback":
        pytest.skip("the shipped rollback is not kubectl")
    (problem,) = problems(path, value)
    assert problem.startswith(f"{path}: "), problem
    assert message in problem


@pytest.mark.parametrize("path,value", [
    ("prometheus.job", 'canary "guard" {job} \\ é'),
    ("alertmanager.webhook_url", "https://user:p%40ss@hook.example:9443/alerts?x=1&y=%20#frag"),
    ("alertmanager.webhook_url", "http://[::1]:9112/alerts"),
    ("alertmanager.webhook_url", "http://127.0.0.1:9112/alerts"),
    ("runbook_url", "https://wiki.example/runbooks/canary-guard"),
    ("auth.scheme", ""),
    ("auth.header", "X-Api-Key"),
    ("webhook.token_file", "/run/secrets/token é"),
    ("actions.rollback.deployment", "recoveryos.v2"),
])
def test_legitimate_values_pass(path, value):
    plan = parse_plan(with_value(path, value), "t.yaml")
    node = plan
    for key in path.split("."):
        node = node[key] if isinstance(node, dict) else getattr(node, key)
    assert node == value
