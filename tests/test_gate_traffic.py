"""The gate with two sources of evidence, against a real Prometheus holding backfilled probe data
and the service's own request metrics (RecoveryOS's names, the track added by scraping).

Each scenario is a track of its own: sparse probes (100 an hour per endpoint, too few to show
99.9%) beside plentiful users (3,600 requests an hour per endpoint) that show every criterion;
a breach only the users show; failures that are a feature switched off; and nothing but sparse
probes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import need_binary
from gate_backfill import Scenario, backfill, prometheus_over, write_openmetrics

from canary_guard.cli import main

EPS = ("alpha", "beta", "gamma")
AT = float(int(time.time() // 60 * 60 - 3 * 3600))
H = 3600.0

PLAN = f"""
version: 1
name: gate_traffic
service: svc
targets:
  - {{name: canary, url: "http://127.0.0.1:1", guarded: true}}
  - {{name: stable, url: "http://127.0.0.1:2"}}
probe: {{interval: 1s, timeout: 1s}}
endpoints:
{chr(10).join(f"  - {{name: {e}, path: /{e}}}" for e in EPS)}
traffic: {{job: svc}}
phases:
  - {{name: phase_1, traffic_percent: 5, duration: 90m,
     criteria: {{availability: 0.999, avg_latency: 500ms, error_rate: 0.01, p95_latency: 500ms,
                p99_latency: 1s, window: 1h}}}}
  - {{name: phase_2, traffic_percent: 50}}
"""


def sparse(track: str, seed: int) -> Scenario:
    return Scenario(track, EPS, AT - 2 * H, AT, 100, seed=seed)


PROBES = [sparse(t, i) for i, t in enumerate(("users", "base", "badusers", "onlyprobes", "flagged"), 1)]
TRAFFIC = [
    Scenario("users", EPS, AT - 2 * H, AT, 3600, seed=11),
    Scenario("base", EPS, AT - 2 * H, AT, 3600, seed=12),
    # 3% of the users' requests fail: a breach that the sparse probes cannot show
    Scenario("badusers", EPS, AT - 2 * H, AT, 3600, failures_per_hour=108, seed=13),
]
# the same 3% of failures, every one a feature switched off (error_type feature_disabled)
FLAGGED = [Scenario("flagged", EPS, AT - 2 * H, AT, 3600, failures_per_hour=108, seed=14)]


@pytest.fixture(scope="module")
def prom(tmp_path_factory) -> str:
    promtool = need_binary("promtool")
    root = tmp_path_factory.mktemp("gate-traffic-prom")
    for i, (traffic, error_type) in enumerate(((TRAFFIC, "internal"), (FLAGGED, "feature_disabled"))):
        om = root / f"data{i}.om"
        write_openmetrics(PROBES if i == 0 else [], om, traffic=traffic, error_type=error_type)
        backfill(promtool, om, root / "tsdb")
    with prometheus_over(root) as url:
        yield url


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gate-traffic-plan") / "plan.yaml"
    path.write_text(PLAN)
    return path


def gate(capsys, prom: str, plan_file: Path, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["gate", "--plan", str(plan_file), "--prometheus", prom, "--at", str(AT), "--json",
                 "--phase", "1", *extra])
    return code, json.loads(capsys.readouterr().out)


def crit(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["criteria"]}


def test_users_show_what_sparse_probes_cannot(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--track", "users", "--baseline", "base")
    assert (code, doc["decision"]) == (0, "promote"), doc["reasons"]
    assert doc["source"] == "probe+traffic"
    # the probes alone hold: 300 probes an hour cannot show 99.9%
    assert doc["sources"]["probe"]["decision"] == "hold"
    assert doc["sources"]["traffic"]["decision"] == "promote"
    c = crit(doc)
    assert c["availability"]["source"] == "traffic" and c["availability"]["verdict"] == "pass"
    assert 10_500 <= c["availability"]["probes"] <= 11_000  # requests in the 1h window
    assert "requests" in c["availability"]["detail"]
    assert all(r["verdict"] == "ok" and r["source"] == "traffic" for r in doc["comparison"])


def test_a_breach_only_the_users_show_rolls_back(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--track", "badusers", "--baseline", "base")
    assert (code, doc["decision"]) == (3, "rollback"), doc["reasons"]
    c = crit(doc)
    assert c["error_rate"]["verdict"] == "fail" and c["error_rate"]["source"] == "traffic"
    assert doc["sources"]["probe"]["decision"] == "hold"
    assert any("error_rate breached (traffic)" in r for r in doc["reasons"]), doc["reasons"]
    regressed = [r for r in doc["comparison"] if r["verdict"] == "regression"]
    assert regressed and all(r["source"] == "traffic" for r in regressed)


def test_a_feature_switched_off_is_no_failure(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--track", "flagged", "--baseline", "none")
    c = crit(doc)
    assert c["error_rate"]["source"] == "traffic" and c["error_rate"]["verdict"] == "pass", c["error_rate"]
    assert doc["decision"] == "promote", doc["reasons"]


def test_without_users_the_probes_decide_alone(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--track", "onlyprobes", "--baseline", "none")
    assert (code, doc["decision"]) == (2, "hold")
    assert doc["source"] == "probe"
    assert doc["sources"]["traffic"]["decision"] is None
    assert all(c["source"] == "probe" for c in doc["criteria"])


def test_the_table_names_the_source(capsys, prom, plan_file):
    capsys.readouterr()
    main(["gate", "--plan", str(plan_file), "--prometheus", prom, "--at", str(AT), "--phase", "1",
          "--track", "badusers", "--baseline", "base"])
    out = capsys.readouterr().out
    assert "SOURCE" in out and "traffic" in out
