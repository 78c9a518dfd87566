"""The gate against a real Prometheus holding known, backfilled probe data.

One Prometheus for the module; every scenario is a track of its own. The data end ``AT``,
three hours ago (backfilled blocks must be older than the head), and the gate is asked
``--at AT``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import CLI, Processes, free_port, need_binary
from gate_backfill import Scenario, backfill, prometheus_over, write_openmetrics

from canary_guard.cli import main

EPS = ("alpha", "beta", "gamma")
AT = float(int(time.time() // 60 * 60 - 3 * 3600))
H = 3600.0

PLAN = f"""
version: 1
name: gate_test
service: test
targets:
  - {{name: canary, url: "http://127.0.0.1:1", guarded: true}}
  - {{name: stable, url: "http://127.0.0.1:2"}}
probe: {{interval: 1s, timeout: 1s}}
endpoints:
{chr(10).join(f"  - {{name: {e}, path: /{e}}}" for e in EPS)}
phases:
  - {{name: phase_1, traffic_percent: 5, duration: 90m,
     criteria: {{availability: 0.999, avg_latency: 500ms, error_rate: 0.01, p95_latency: 500ms,
                p99_latency: 1s, window: 1h}}}}
  - {{name: phase_2, traffic_percent: 50}}
"""

SCENARIOS = [
    # healthy, 2h of data: everything shown; twin is the same service (another seed)
    Scenario("good", EPS, AT - 2 * H, AT, 3600),
    Scenario("twin", EPS, AT - 2 * H, AT, 3600, seed=2),
    # healthy but only 40 minutes old: too early for a 90m phase
    Scenario("early", EPS, AT - 40 * 60, AT, 3600),
    # one endpoint never probed
    Scenario("partial", EPS[:2], AT - 2 * H, AT, 3600),
    # few probes: 99.9% availability cannot be shown with 100 probes an hour per endpoint
    Scenario("sparse", EPS, AT - 2 * H, AT, 100),
    # 3% of probes fail: a breach
    Scenario("breach", EPS, AT - 2 * H, AT, 3600, failures_per_hour=108),
    # 30% slower than its baseline, identical error rates (1 in 1,000)
    Scenario("slow", EPS, AT - 2 * H, AT, 1000, median=0.12 * 1.3, failures_per_hour=1, seed=3),
    Scenario("base", EPS, AT - 2 * H, AT, 1000, median=0.12, failures_per_hour=1, seed=4),
    # 2% of 1,000 probes fail against 0.1%: mostly-zero counts
    Scenario("errs", EPS, AT - 2 * H, AT, 1000, failures_per_hour=20, seed=5),
    Scenario("errbase", EPS, AT - 2 * H, AT, 1000, failures_per_hour=1, seed=6),
    # two identical builds whose fast endpoints differ by 3 ms across the 5 ms bucket boundary
    # (the 7 ms against 4 ms): significant, 75% slower, and of no practical size
    Scenario("fast7", EPS, AT - 2 * H, AT, 3600, median=0.007, sigma=0.15, seed=7),
    Scenario("fast4", EPS, AT - 2 * H, AT, 3600, median=0.004, sigma=0.15, seed=8),
    # both tracks breach the error-rate objective (3%): a shared cause, not the release
    Scenario("sharedc", EPS, AT - 2 * H, AT, 3600, failures_per_hour=108, seed=9),
    Scenario("sharedb", EPS, AT - 2 * H, AT, 3600, failures_per_hour=108, seed=10),
]


@pytest.fixture(scope="module")
def prom(tmp_path_factory) -> str:
    promtool = need_binary("promtool")
    root = tmp_path_factory.mktemp("gate-prom")
    om = root / "data.om"
    write_openmetrics(SCENARIOS, om)
    backfill(promtool, om, root / "tsdb")
    with prometheus_over(root) as url:
        yield url


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gate-plan") / "plan.yaml"
    path.write_text(PLAN)
    return path


def gate(capsys, prom: str, plan_file: Path, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["gate", "--plan", str(plan_file), "--prometheus", prom, "--at", str(AT), "--json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


def crit(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["criteria"]}


def test_promotes_good_data_and_does_not_flag_an_identical_track(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "good", "--baseline", "twin")
    assert (code, doc["decision"]) == (0, "promote"), doc["reasons"]
    c = crit(doc)
    assert all(x["verdict"] == "pass" for x in c.values())
    # 3 endpoints x 3,600 probes an hour: the window holds ~10,800 probes
    assert 10_500 <= c["availability"]["probes"] <= 11_000
    assert c["availability"]["value"] == 1.0 and c["availability"]["threshold"] == 0.999
    assert 0.1 < c["avg_latency"]["value"] < 0.15
    assert c["all_endpoints_answering"]["value"] == 3
    assert [r["verdict"] for r in doc["comparison"]] == ["ok"] * 3
    for row in doc["comparison"]:
        assert abs(row["latency"]["cliffs_delta"]) < 0.05
        lo, hi = row["latency"]["cliffs_delta_ci"]
        assert lo < row["latency"]["cliffs_delta"] < hi
    assert doc["timing"]["verdict"] == "pass"


def test_holds_without_data(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "phase_1", "--track", "nothing",
                     "--baseline", "none")
    assert (code, doc["decision"]) == (2, "hold")
    assert {x["verdict"] for x in doc["criteria"]} == {"insufficient"}
    assert any("cannot tell when the phase started" in r for r in doc["reasons"])


def test_holds_when_an_endpoint_has_no_probes(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "partial", "--baseline", "none")
    assert (code, doc["decision"]) == (2, "hold")
    answering = crit(doc)["all_endpoints_answering"]
    assert answering["verdict"] == "insufficient" and "gamma" in answering["detail"]


def test_holds_when_too_few_probes_to_show_availability(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "sparse", "--baseline", "none")
    assert (code, doc["decision"]) == (2, "hold")
    avail = crit(doc)["availability"]
    assert avail["value"] == 1.0 and 290 <= avail["probes"] <= 310
    assert avail["verdict"] == "insufficient" and avail["needed"] == 2995
    # ~300 probes an hour -> 2,995 probes take ~10h
    assert any("--window 10h" in r for r in doc["reasons"]), doc["reasons"]


def test_holds_early_in_the_phase(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "early", "--baseline", "none")
    assert (code, doc["decision"]) == (2, "hold")
    assert all(x["verdict"] == "pass" for x in doc["criteria"])  # only the time is missing
    assert doc["timing"]["verdict"] == "insufficient"
    assert 39 * 60 <= doc["timing"]["elapsed"] <= 41 * 60 and doc["timing"]["required"] == 5400
    assert any(r.startswith("too early") for r in doc["reasons"])
    # with the phase's start given, the same data promotes once 90 minutes have passed
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "good", "--baseline", "none",
                     "--since", str(AT - 30 * 60))
    assert code == 2 and doc["timing"]["elapsed"] == 1800


def test_rolls_back_on_a_breach(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "breach", "--baseline", "none")
    assert (code, doc["decision"]) == (3, "rollback")
    c = crit(doc)
    assert c["error_rate"]["verdict"] == "fail" and c["error_rate"]["value"] == pytest.approx(0.03, abs=0.002)
    assert c["availability"]["verdict"] == "fail"
    assert c["p95_latency"]["verdict"] == "pass"


def test_detects_a_canary_30_percent_slower_than_stable(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "slow", "--baseline", "base")
    assert (code, doc["decision"]) == (3, "rollback")
    # the absolute criteria alone would not roll back: 156ms is well within 500ms
    assert all(x["verdict"] != "fail" for x in doc["criteria"]), doc["criteria"]
    for row in doc["comparison"]:
        assert row["verdict"] == "regression", row
        assert row["latency"]["regression"] is True
        # medians interpolated inside the 100-250ms bucket: the 30% shows as ~17%
        assert 0.1 <= row["latency"]["median_change"] <= 0.4
        assert row["latency"]["cliffs_delta"] >= 0.147
        assert row["latency"]["p_holm"] < 0.01
        assert "regression" not in row["errors"]  # identical error rates


def test_detects_2_percent_failures_against_0_1_percent(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "errs", "--baseline", "errbase")
    assert code == 3
    for row in doc["comparison"]:
        err = row["errors"]
        assert 19 <= err["canary_failures"] <= 21 and err["baseline_failures"] <= 2, err
        assert err["regression"] is True and err["p_holm"] < 0.01
        assert "regression" not in row["latency"]
        assert abs(row["latency"]["cliffs_delta"]) < 0.147


def test_a_3ms_difference_between_identical_builds_is_no_regression(capsys, prom, plan_file, tmp_path):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "fast7", "--baseline", "fast4")
    assert (code, doc["decision"]) == (0, "promote"), doc["reasons"]
    for row in doc["comparison"]:
        lat = row["latency"]
        assert lat["p_holm"] < 0.01 and lat["cliffs_delta"] > 0.5  # significant, and large relatively
        assert lat["median_change"] > 0.4
        assert 0.001 < lat["mean_difference"] < 0.005  # ~3 ms: below 25 ms, 5% of the 500 ms p95
        assert row["verdict"] == "ok" and "regression" not in lat
        assert "below the absolute margin of 25ms" in row["detail"]
    # the absolute margin is what keeps it a promotion: at 1 ms it would be a regression
    strict = tmp_path / "strict.yaml"
    strict.write_text(PLAN + "analysis: {latency_abs_margin: 1ms}\n")
    code, doc = gate(capsys, prom, strict, "--phase", "1", "--track", "fast7", "--baseline", "fast4")
    assert (code, doc["decision"]) == (3, "rollback")


def test_identical_builds_never_get_rollback(capsys, prom, plan_file):
    """Every pairing of the same service with another seed: promote or hold, never rollback."""
    for track, base in (("good", "twin"), ("twin", "good"), ("fast4", "fast4"), ("sharedc", "sharedb")):
        if track == base:
            continue
        code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", track, "--baseline", base)
        assert doc["decision"] in ("promote", "hold"), (track, base, doc["reasons"])


def test_a_breach_on_both_tracks_holds_and_says_why(capsys, prom, plan_file):
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "sharedc", "--baseline", "sharedb")
    assert (code, doc["decision"]) == (2, "hold")
    c = crit(doc)
    assert c["error_rate"]["verdict"] == "fail" and c["error_rate"]["shared"] is True
    assert c["error_rate"]["baseline_verdict"] == "fail"
    assert any("error_rate breached on sharedc and not shown to hold on sharedb" in r and
               "a rollback would not help" in r for r in doc["reasons"]), doc["reasons"]
    # the same breach against a healthy baseline rolls back; without a baseline too
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "sharedc", "--baseline", "good")
    assert code == 3 and crit(doc)["error_rate"]["shared"] is False
    code, doc = gate(capsys, prom, plan_file, "--phase", "1", "--track", "sharedc", "--baseline", "nothing")
    assert code == 3  # a baseline without data never blocks a rollback


def test_table_for_people(capsys, prom, plan_file):
    capsys.readouterr()
    code = main(["gate", "--plan", str(plan_file), "--prometheus", prom, "--at", str(AT), "--phase", "1",
                 "--track", "slow", "--baseline", "base"])
    out = capsys.readouterr().out
    assert code == 3
    assert out.startswith("ROLLBACK  phase phase_1")
    assert "CRITERION" in out and "p99_latency" in out and "REGRESSION" in out
    assert "alpha regressed against base" in out


def test_an_error_regression_needs_an_absolute_count_too():
    """A ratio far above the baseline's, significant, but only a few failures: no regression."""
    from canary_guard.gate.evaluate import compare
    from canary_guard.gate.prom import Series

    from canary_guard.plan import parse_plan

    plan = parse_plan(yaml.safe_load(PLAN) | {"analysis": {"alpha": 0.05, "min_probes": 30}}, "t")

    def series(failures: int, n: int) -> Series:
        s = Series()
        s.outcomes.update({"success": n - failures, "error": failures})
        return s

    few = compare(plan, {"alpha": series(4, 60)}, {"alpha": series(0, 4000)})
    err = few[0].errors
    assert err["p_holm"] < 0.05 and err["difference"] > 0.05  # 6.7% against 0%
    assert few[0].verdict == "ok" and "below the absolute margin of 5" in few[0].detail
    many = compare(plan, {"alpha": series(8, 120)}, {"alpha": series(0, 4000)})
    assert many[0].verdict == "regression" and many[0].errors["excess_failures"] == 8


def test_exit_codes_for_usage_and_connection_errors(plan_file):
    port = free_port()  # nothing listens there
    proc = subprocess.run([*CLI, "gate", "--plan", str(plan_file), "--prometheus", f"http://127.0.0.1:{port}",
                           "--phase", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "cannot reach Prometheus" in proc.stderr
    proc = subprocess.run([*CLI, "gate", "--plan", str(plan_file), "--prometheus", f"http://127.0.0.1:{port}",
                           "--phase", "7"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no phase '7'" in proc.stderr


def test_status_once_shows_every_endpoint_of_every_track(capsys, prom, plan_file):
    capsys.readouterr()
    code = main(["status", "--plan", str(plan_file), "--prometheus", prom, "--at", str(AT), "--once",
                 "--tracks", "breach,good"])
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b[" not in out  # one plain frame
    lines = [ln for ln in out.splitlines() if ln.startswith(("breach ", "good "))]
    assert len(lines) == 6
    assert all(" ERR" in ln for ln in lines if ln.startswith("breach"))
    assert all(ln.rstrip().endswith("ok") for ln in lines if ln.startswith("good"))


def test_status_live_redraws_in_place(prom, plan_file, tmp_path):
    procs = Processes(tmp_path)
    try:
        procs.start([*CLI, "status", "--plan", str(plan_file), "--prometheus", prom, "--interval", "0.2"],
                    "status")
        deadline = time.monotonic() + 30
        while procs.log("status").count("\x1b[H") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        procs.stop_all()
    out = procs.log("status")
    assert out.count("\x1b[H") >= 2, out  # home, then the frame, again and again
    assert "\x1b[J" in out and "no data" in out  # nothing was probed just now
    assert "canary: guarded" in out and "stable: baseline" in out


# -- gate serve: the same decisions over HTTP ---------------------------------------------------


@pytest.fixture(scope="module")
def served(prom, plan_file, tmp_path_factory):
    """``canary-guard gate serve`` as a process, on the backfilled Prometheus."""
    import httpx

    procs = Processes(tmp_path_factory.mktemp("gate-serve"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        procs.start([*CLI, "gate", "serve", "--plan", str(plan_file), "--prometheus", prom,
                     "--listen", f"127.0.0.1:{port}"], "gate-serve", ready_url=f"{url}/healthz", timeout=60)
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client
    finally:
        procs.stop_all()


FLAGGER = {"name": "recoveryos", "namespace": "recoveryos", "phase": "Progressing",
           "checksum": "85d557f47b", "type": "confirm-promotion", "metadata": {}}


def test_serve_promotes_with_200_on_healthy_data(served):
    resp = served.get("/gate", params={"phase": "1", "at": AT, "track": "good", "baseline": "twin"})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["decision"] == "promote" and all(c["verdict"] == "pass" for c in doc["criteria"])
    flagger = served.post("/flagger/confirm-promotion", json=FLAGGER,
                          params={"at": AT, "track": "good", "baseline": "twin"})
    assert flagger.status_code == 200 and flagger.json()["go"] is True
    assert served.post("/flagger/rollback", params={"at": AT, "track": "good", "baseline": "twin"},
                       json={**FLAGGER, "type": "rollback"}).status_code == 412  # not a rollback: carry on
    argo = served.get("/argo", params={"phase": "1", "at": AT, "track": "good", "baseline": "twin"})
    assert argo.status_code == 200 and argo.json()["decision"] == "promote"


def test_serve_holds_with_a_non_2xx_status_without_data(served):
    resp = served.get("/gate", params={"phase": "1", "at": AT, "track": "nothing", "baseline": "none"})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "60"
    assert resp.json()["decision"] == "hold"
    # Flagger: no promotion, and no rollback either
    payload = {**FLAGGER, "metadata": {"phase": "1", "track": "nothing", "baseline": "none"}}
    assert served.post("/flagger/confirm-promotion", params={"at": AT}, json=payload).status_code == 412
    assert served.post("/flagger/rollback", params={"at": AT}, json=payload).status_code == 412
    assert served.post("/flagger/check", params={"at": AT}, json=payload).status_code == 200
    argo = served.get("/argo", params={"phase": "1", "at": AT, "track": "nothing", "baseline": "none"})
    assert argo.status_code == 200 and argo.json()["decision"] == "hold"  # neither condition: inconclusive


def test_serve_rolls_back_with_409_and_tells_flagger(served):
    params = {"phase": "1", "at": AT, "track": "breach", "baseline": "none"}
    resp = served.get("/gate", params=params)
    assert resp.status_code == 409 and resp.json()["decision"] == "rollback"
    payload = {**FLAGGER, "type": "rollback", "metadata": {"phase": "phase_1"}}
    assert served.post("/flagger/rollback", params={"at": AT, "track": "breach", "baseline": "none"},
                       json=payload).json()["go"] is True
    assert served.post("/flagger/check", params={"at": AT, "track": "breach", "baseline": "none"},
                       json=payload).status_code == 409


def test_serve_names_bad_input_and_an_unreachable_prometheus(served, plan_file):
    bad = served.get("/gate", params={"phase": "9"})
    assert bad.status_code == 400 and "phase: no phase '9'" in bad.json()["error"]
    assert served.get("/gate").json()["error"].startswith("phase: required")
    assert served.get("/gate", params={"phase": "1", "at": "yesterday"}).json()["error"].startswith(
        "at: 'yesterday' is not RFC3339")
    assert served.post("/flagger/confirm-promotion", content=b"[]",
                       headers={"Content-Type": "application/json"}).status_code == 400
    missing = served.post("/flagger/rollback", json={"name": "x"})
    assert missing.status_code == 400 and "body.namespace" in missing.json()["error"]
    from canary_guard.gate.serve import create_app

    from canary_guard.plan import load_plan

    app = create_app(load_plan(plan_file), f"http://127.0.0.1:{free_port()}", timeout=2)
    resp = app.test_client().get("/gate?phase=1")
    assert resp.status_code == 502 and "cannot reach Prometheus" in resp.get_json()["error"]


def test_the_rollout_reads_gate_serve_like_the_gate_process(served):
    """rollout run --gate-url: 200, 503 and 409 become promote, hold and rollback; anything
    else holds."""
    from canary_guard.rollout.gate import GateService

    url = str(served.base_url)
    ask = {"at": str(AT), "baseline": "none"}
    assert GateService(url, 60, params={**ask, "track": "good"}).decide(1, None).decision == "promote"
    hold = GateService(url, 60, params={**ask, "track": "nothing"}).decide(1, None)
    assert hold.decision == "hold" and any("cannot tell when the phase started" in r for r in hold.reasons)
    assert GateService(url, 60, params={**ask, "track": "breach"}).decide(1, None).decision == "rollback"
    bad = GateService(url, 60, params=ask).decide(9, None)
    assert bad.decision == "error" and "HTTP 400" in bad.reasons[0]
    gone = GateService(f"http://127.0.0.1:{free_port()}", 5).decide(1, None)
    assert gone.decision == "error" and "did not answer" in gone.reasons[0]
