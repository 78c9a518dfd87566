"""Test helpers: the metric names a PromQL expression selects, and the names each component exposes.

Used by the dashboard and deploy tests to check that every query names only metrics that the
exporter, the recording/alerting rules or the webhook actually produce.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from canary_guard.durations import format_duration

# Grafana variables -> concrete values, so that the expression is plain PromQL.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$track": "canary",
    "$endpoint": "edge_ai",
    "$phase": "phase_1",
}

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "atan2",
    # aggregation operators (may be followed by "by (...)" rather than "(")
    "sum", "avg", "count", "min", "max", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "limitk", "limit_ratio",
}


def substitute(expr: str) -> str:
    for var in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(var, GRAFANA_VARS[var])
    if "$" in expr:
        raise ValueError(f"unknown template variable in {expr!r}")
    return expr


def unwrap_label_values(query: str) -> str:
    """``label_values(SELECTOR, label)`` (a Grafana variable query) -> SELECTOR."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*", query, re.S)
    return m.group(1) if m else query


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (``name{...}`` and ``{__name__="name"}``)."""
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1 ", text)
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)", text):
        word = m.group(1)
        rest = text[m.end():].lstrip()
        if word.lower() in _KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def exposition_names(text: str) -> set[str]:
    """Metric family names (and histogram/counter sample names) in a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
            names.add(family.name + "_created")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count", "_created"))
        for sample in family.samples:
            names.add(sample.name)
    return names


def promtool_check_exprs(exprs: list[str], tmp: Path) -> subprocess.CompletedProcess:
    """Write the expressions as recording rules and run ``promtool check rules`` on them."""
    rules = [{"record": f"dashboard_query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)


def contract_record_names(plan) -> set[str]:
    """The recording rule names of the common brief's contract, for each window of the plan."""
    names = {"track:canary_phase_gate:ok", "track:canary_phase_gate:all_ok"}
    families = [
        "canary_probes:rate", "canary_probes_success:rate", "canary_probes_error:rate",
        "canary_probes_null:rate", "canary_probe_error_ratio:ratio_rate",
        "canary_probe_availability:ratio_rate", "canary_probe_duration_seconds:avg_rate",
        "canary_probe_duration_seconds:p95_rate", "canary_probe_duration_seconds:p99_rate",
    ]
    for w in plan.windows():
        for level in ("track_endpoint", "track"):
            names.update(f"{level}:{f}{format_duration(w)}" for f in families)
    return names


def rule_file_names(path: Path) -> tuple[set[str], set[str]]:
    """(recorded names, alert names) of a Prometheus rule file."""
    data = yaml.safe_load(path.read_text())
    records, alerts = set(), set()
    for group in data.get("groups", []):
        for rule in group.get("rules", []):
            if "record" in rule:
                records.add(rule["record"])
            if "alert" in rule:
                alerts.add(rule["alert"])
    return records, alerts


def exporter_metric_names() -> set[str]:
    """Every series name the exporter's exposition can contain (its FAMILIES table)."""
    from canary_guard.exporter.metrics import FAMILIES

    names = set()
    for name, kind, _ in FAMILIES:
        names.add(name)
        if kind == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
    return names


def webhook_metric_names(plan, tmp: Path) -> set[str]:
    """The names on a real webhook app's /metrics page (Flask test client, worker not started)."""
    from canary_guard.webhook.app import WebhookConfig, create_app

    app = create_app(plan, WebhookConfig(db=str(tmp / "webhook.db"), token="t", start_worker=False))
    page = app.test_client().get("/metrics")
    assert page.status_code == 200
    return exposition_names(page.get_data(as_text=True))


def rules_render(plan_path: Path | None, out: Path) -> Path | None:
    """Run ``canary-guard rules render``; None when the rules command is not there."""
    import sys

    cmd = [sys.executable, "-m", "canary_guard", "rules", "render", "--out", str(out)]
    if plan_path:
        cmd += ["--plan", str(plan_path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 and "invalid choice: 'rules'" in result.stderr:
        return None
    assert result.returncode == 0, result.stderr
    return out
