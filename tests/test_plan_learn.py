"""``plan learn`` and the preflight (``plan check --against``, exporter start-up) against real
sandboxes on loopback; the in-place plan edit against real plan files."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import CLI, start_sandbox

from canary_guard import learn, preflight
from canary_guard.judge import ProbeOutcome
from canary_guard.plan import Learned, default_plan_path, load_plan, parse_plan
from canary_guard.sampling import Answer, Pacing, Sample, SamplingError

SHIPPED = default_plan_path().read_text()
# What the shipped plan required before it followed the reference: `result`, which five
# endpoints never return, so every healthy answer of theirs counted as null.
NEVER_RETURNED = ("causal_analysis", "neuromorphic", "graph_neural", "quantum_crypto", "explainable_ai")


def old_plan_text() -> str:
    lines, current = [], None
    for line in SHIPPED.split("\n"):
        if line.startswith("  - name: "):
            current = line.split(": ", 1)[1]
        if current in NEVER_RETURNED and line.startswith("    required_fields:"):
            lines.append("    required_fields: [result]")
            current = "skip"  # drop the continuation lines of the flow list
            continue
        if current == "skip" and line.startswith("                      "):
            continue
        lines.append(line)
    return "\n".join(lines)


def plan_file(tmp_path, text: str, name: str = "plan.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "plan", *args], capture_output=True, text=True, timeout=timeout,
                          env={"RECOVERYOS_API_KEY": "", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """A healthy simulated RecoveryOS (the reference latency profile), shared by the module."""
    from conftest import Processes

    procs = Processes(tmp_path_factory.mktemp("learn-logs"))
    try:
        yield start_sandbox(procs, "--seed", "4", "--no-access-log", env={"RECOVERYOS_API_KEY": ""})
    finally:
        procs.stop_all()


def test_the_old_plan_text_is_what_the_issue_describes():
    plan = parse_plan(yaml.safe_load(old_plan_text()), "old")
    for name in NEVER_RETURNED:
        assert plan.endpoint(name).required_fields == ["result"]


# -- preflight --------------------------------------------------------------------------------


def test_preflight_names_every_endpoint_and_field_that_fails_on_the_baseline(baseline, tmp_path):
    out = cli("check", str(plan_file(tmp_path, old_plan_text())), "--against", f"stable={baseline}")
    assert out.returncode == 1, out.stdout + out.stderr
    fails = [ln.strip() for ln in out.stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert sorted(f.split(":")[0].split()[1] for f in fails) == sorted(f"{n}.result" for n in NEVER_RETURNED)
    causal = next(f for f in fails if f.startswith("FAIL  causal_analysis.result"))
    assert "absent or null in every answer of the baseline (3/3 answers; it returns target," in causal
    assert "endpoints[4].required_fields[0]" in causal
    assert "5 check(s) of the plan fail on stable" in out.stdout


def test_preflight_passes_the_shipped_plan(baseline):
    out = cli("check", "--against", baseline, "--probes", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: every check of the plan holds on baseline" in out.stdout
    assert "FAIL" not in out.stdout


def test_preflight_reports_what_a_broken_baseline_answers(procs, tmp_path):
    """Errors, null bodies, PII and disabled features on the baseline, each named."""
    url = start_sandbox(procs, "--no-access-log", "--fault", '{"endpoint": "edge_ai", "mode": "error"}',
                        "--fault", '{"endpoint": "neuromorphic", "mode": "null"}',
                        "--fault", '{"endpoint": "quantum_crypto", "mode": "pii", "kind": "ssn"}',
                        "--fault", '{"endpoint": "federated_learning", "mode": "null_field", '
                                   '"field": "client_id"}',
                        env={"RECOVERYOS_API_KEY": ""})
    import httpx

    httpx.post(f"{url}/elite/config/disable", json={"features": ["causal_ai"]}).raise_for_status()
    out = cli("check", "--against", url, "--probes", "1")
    assert out.returncode == 1
    text = out.stdout
    assert "FAIL  edge_ai: errors on the baseline: HTTP 500 in 1/1 answer" in text
    assert "FAIL  neuromorphic: the body is null in 1/1 answer" in text
    assert "FAIL  quantum_crypto: unredacted PII (ssn)" in text
    assert "FAIL  federated_learning.client_id: required field absent or null in every answer" in text
    assert "WARN  causal_analysis: feature disabled on the baseline" in text


def test_preflight_arguments_are_checked(tmp_path):
    out = cli("check", "--against", "stable=ftp://x")
    assert out.returncode == 2 and "--against 'stable=ftp://x'" in out.stderr
    data = yaml.safe_load(SHIPPED)
    data["targets"] = [{"name": "canary", "url": "http://127.0.0.1:1", "guarded": True}]
    data["analysis"].pop("baseline")
    out = cli("check", str(plan_file(tmp_path, yaml.safe_dump(data))), "--against", "x=http://127.0.0.1:1")
    assert out.returncode == 1  # nothing listens there: every endpoint fails with connect
    assert "errors on the baseline: connect in 3/3 answers" in out.stdout
    out = cli("learn", str(plan_file(tmp_path, yaml.safe_dump(data))))
    assert out.returncode == 2 and "the plan has no baseline track" in out.stderr


def test_the_exporter_warns_loudly_at_start_and_probes_anyway(procs, baseline, tmp_path):
    from test_exporter import start_exporter

    data = yaml.safe_load(old_plan_text())
    data["targets"] = [{"name": "canary", "url": baseline, "guarded": True},
                       {"name": "stable", "url": baseline}]
    path = plan_file(tmp_path, yaml.safe_dump(data, sort_keys=False))
    url, _ = start_exporter(procs, str(path), env={"RECOVERYOS_API_KEY": ""})
    import time

    deadline = time.monotonic() + 30
    while "PREFLIGHT FAILED" not in procs.log("exporter") and time.monotonic() < deadline:
        time.sleep(0.2)
    log = procs.log("exporter")
    assert "PREFLIGHT FAILED" in log and "failing=5" in log, log[-3000:]
    for name in NEVER_RETURNED:
        assert f"endpoint={name} field=result" in log
    import urllib.request

    assert b"canary_probes_total" in urllib.request.urlopen(f"{url}/metrics", timeout=10).read()


# -- learn ------------------------------------------------------------------------------------


def test_learn_proposes_and_writes_the_contract_keeping_the_rest_of_the_file(baseline, tmp_path):
    path = plan_file(tmp_path, old_plan_text())
    before = path.read_text()
    out = cli("learn", str(path), "--target", f"stable={baseline}", "--count", "4", "--write")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ENDPOINT" in out.stdout and "P99" in out.stdout and "homomorphic" in out.stdout
    row = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("quantum_crypto"))
    assert "200x4" in row and row.rstrip().endswith("key_id, algorithm, ciphertext, timestamp")
    assert "endpoints[7].required_fields (quantum_crypto): [result] -> [key_id, algorithm" in out.stdout
    assert f"wrote {path}" in out.stdout

    after = path.read_text()
    plan = load_plan(path)
    shipped = load_plan()
    for ep in plan.endpoints:
        assert ep.required_fields == shipped.endpoint(ep.name).required_fields, ep.name
        assert ep.learned is not None and ep.learned.probes == 4 and ep.learned.track == "stable"
    # only the endpoints' lines changed: every comment and every other line is as it was
    old_lines, new_lines = before.split("\n"), after.split("\n")
    assert [ln for ln in old_lines if ln.lstrip().startswith("#")] == \
        [ln for ln in new_lines if ln.lstrip().startswith("#")]
    start = next(i for i, ln in enumerate(old_lines) if ln.startswith("slos:"))
    start_new = next(i for i, ln in enumerate(new_lines) if ln.startswith("slos:"))
    assert old_lines[start:] == new_lines[start_new:]
    assert old_lines[:old_lines.index("endpoints:")] == new_lines[:new_lines.index("endpoints:")]
    # ... and the learned plan passes the preflight against the same baseline
    check = cli("check", str(path), "--against", f"stable={baseline}", "--probes", "1")
    assert check.returncode == 0, check.stdout


def test_learn_without_write_changes_nothing_and_says_so(baseline, tmp_path):
    path = plan_file(tmp_path, SHIPPED)
    out = cli("learn", str(path), "--target", baseline, "--count", "2")
    assert out.returncode == 0, out.stderr
    assert path.read_text() == SHIPPED
    assert "no change proposed" in out.stdout or "--write" in out.stdout


def test_learn_refuses_to_exceed_the_rate_limits(baseline, tmp_path):
    data = yaml.safe_load(SHIPPED)
    data["rate_limits"]["probe_exempt"] = False
    path = str(plan_file(tmp_path, yaml.safe_dump(data, sort_keys=False)))
    out = cli("learn", path, "--target", baseline, "--count", "60")  # 600 > half of 1,000 an hour
    assert out.returncode == 2
    assert "rate_limits.total_per_hour" in out.stderr and "--count" in out.stderr
    out = cli("learn", "--target", baseline, "--interval", "100ms")
    assert out.returncode == 2 and "rate_limits.per_endpoint_per_minute (100)" in out.stderr
    out = cli("learn", "--target", baseline, "--write")
    assert out.returncode == 2 and "name the plan FILE" in out.stderr


def test_pacing_follows_the_plan_rate_limits():
    shipped = load_plan()
    plan = shipped.model_copy(update={"rate_limits": shipped.rate_limits.model_copy(
        update={"probe_exempt": False})})
    pacing = Pacing.from_plan(plan)
    # half of 100 a minute per endpoint, half of a burst of 20 per second, half of 1,000 an hour
    assert pacing.endpoint_gap == pytest.approx(1.2) and pacing.global_gap == pytest.approx(0.1)
    assert pacing.max_requests == 500
    pacing.check(500)
    with pytest.raises(SamplingError, match="total_per_hour"):
        pacing.check(501)
    limits = plan.rate_limits.model_copy(update={"probe_exempt": True})
    exempt = plan.model_copy(update={"rate_limits": limits})
    assert Pacing.from_plan(exempt).max_requests is None


def test_learn_respects_the_pace_on_the_wire(procs, tmp_path):
    """Probes of one endpoint are at least the plan's gap apart (measured by the sandbox)."""
    import time

    data = yaml.safe_load(SHIPPED)
    data["rate_limits"] = {"per_endpoint_per_minute": 240, "burst": 40}  # gap 0.5 s, 20/s overall
    data["endpoints"] = data["endpoints"][:3]
    url = start_sandbox(procs, "--latency", "none", env={"RECOVERYOS_API_KEY": ""})
    path = plan_file(tmp_path, yaml.safe_dump(data, sort_keys=False))
    t0 = time.monotonic()
    out = cli("learn", str(path), "--target", url, "--count", "5")
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert took >= 4 * 0.5  # 5 probes of an endpoint, 0.5 s apart
    import httpx

    stats = httpx.get(f"{url}/-/stats").json()["endpoints"]
    assert [stats[e["name"]]["request_count"] for e in data["endpoints"]] == [5, 5, 5]


# -- proposals and the in-place edit, without a network ----------------------------------------


def answer(fields: tuple[str, ...] | None, duration: float = 0.01, status: int = 200) -> Answer:
    outcome = ProbeOutcome("success", None, status, duration)
    return Answer(outcome, fields, (), "object" if fields is not None else "other")


def test_a_timeout_is_proposed_only_above_the_tail_and_never_lowered():
    plan = load_plan()
    ep = plan.endpoint("edge_ai")
    slow = Sample(ep, [answer(("deployment_id",), d) for d in (0.4, 0.9, 1.6)])
    [prop] = [p for p in learn.propose(plan, {"stable": {"edge_ai": slow}}) if p.endpoint == "edge_ai"]
    # 2 x 1.6 s = 3.2 s is above the demo's 2.5 s; never below probe.timeout's 5 s
    assert prop.timeout == 5.0
    assert prop.learned.max == 1.6 and prop.learned.probes == 3
    fast = Sample(ep, [answer(tuple(ep.required_fields), 0.01) for _ in range(5)])
    [prop] = learn.propose(plan, {"stable": {"edge_ai": fast}})
    assert prop.timeout is None and prop.required_fields is None and not prop.changes


def test_fields_must_be_present_on_every_track():
    plan = load_plan()
    ep = plan.endpoint("quantum_crypto")
    a = Sample(ep, [answer(("key_id", "algorithm", "ciphertext", "timestamp", "extra"))])
    b = Sample(ep, [answer(("key_id", "algorithm", "ciphertext", "timestamp"))])
    [prop] = learn.propose(plan, {"stable": {ep.name: a}, "canary": {ep.name: b}})
    assert prop.required_fields is None  # "extra" is not on every track: nothing to add
    [prop] = learn.propose(plan, {"stable": {ep.name: a}})
    assert prop.added == ["extra"]


def test_apply_edits_only_what_it_proposes(tmp_path):
    text = (
        "# header comment\n"
        "version: 1\n"
        "name: t\n"
        "service: s\n"
        "targets: [{name: canary, url: 'http://x', guarded: true}]  # inline\n"
        "endpoints:\n"
        "  - name: a\n"
        "    path: /a\n"
        "    required_fields: [x,\n"
        "                      y]   # keep me\n"
        "    # a comment between keys\n"
        "    timeout: 2s   # why two seconds\n"
        "  - name: b\n"
        "    path: /b\n"
        "\n"
        "# before slos\n"
        "slos: {window: 1h}\n"
    )
    plan = parse_plan(yaml.safe_load(text), "t")
    seen = Learned(probes=3, p50=0.01, p95=0.02, p99=0.02, max=0.03, track="stable",
                   at="2026-01-01T00:00:00Z")
    props = [learn.Proposal(0, "a", required_fields=["x", "z"], timeout=3.0, learned=seen),
             learn.Proposal(1, "b", required_fields=["q"], learned=seen)]
    path = plan_file(tmp_path, text)
    learn.write(path, plan, props)
    got = path.read_text()
    assert got == (
        "# header comment\n"
        "version: 1\n"
        "name: t\n"
        "service: s\n"
        "targets: [{name: canary, url: 'http://x', guarded: true}]  # inline\n"
        "endpoints:\n"
        "  - name: a\n"
        "    path: /a\n"
        "    required_fields: [x, z]   # keep me\n"
        "    # a comment between keys\n"
        "    timeout: 3s   # why two seconds\n"
        "    learned: {probes: 3, p50: 10ms, p95: 20ms, p99: 20ms, max: 30ms, track: stable,\n"
        "              at: '2026-01-01T00:00:00Z'}\n"
        "  - name: b\n"
        "    path: /b\n"
        "    required_fields: [q]\n"
        "    learned: {probes: 3, p50: 10ms, p95: 20ms, p99: 20ms, max: 30ms, track: stable,\n"
        "              at: '2026-01-01T00:00:00Z'}\n"
        "\n"
        "# before slos\n"
        "slos: {window: 1h}\n"
    )
    # learning again replaces the learned block rather than adding a second one
    again = [learn.Proposal(1, "b", learned=seen.model_copy(update={"probes": 9}))]
    learn.write(path, load_plan(path), again)
    assert path.read_text().count("learned:") == 2 and "probes: 9" in path.read_text()


def test_write_refuses_a_file_that_does_not_match(tmp_path):
    plan = load_plan()
    path = plan_file(tmp_path, SHIPPED)
    with pytest.raises(ValueError, match="endpoints\\[0\\] is 'continual_learning'"):
        learn.write(path, plan, [learn.Proposal(0, "edge_ai", required_fields=["x"])])
    assert path.read_text() == SHIPPED


def test_plan_check_warns_when_a_learned_p99_is_close_to_the_timeout():
    data = yaml.safe_load(SHIPPED)
    ep = data["endpoints"][9]
    ep.pop("timeout")
    ep["learned"] = {"probes": 30, "p50": "450ms", "p95": "900ms", "p99": "1300ms", "max": "1400ms"}
    plan = parse_plan(data, "t")
    warnings = plan.timeout_warnings()
    close = ("endpoints[9].timeout: the learned p99 (1.3s) of homomorphic is close to its probe "
             "timeout (2s500ms) under the demo settings")
    assert any(w.startswith(close) for w in warnings), warnings
    assert any("set endpoints[9].timeout to at least 4s" in w for w in warnings)
    ep["timeout"] = "5s"
    assert parse_plan(data, "t").timeout_warnings() == []
    ep["learned"]["p95"] = "1200ms"
    assert any(w.startswith("triggers[1].threshold: homomorphic's learned p95 (1.2s)")
               for w in parse_plan(data, "t").timeout_warnings())


def test_preflight_check_flags_a_tail_close_to_the_timeout():
    plan = load_plan()
    ep = plan.endpoint("edge_ai")  # no timeout of its own: 5s, 2.5s in the demo
    s = Sample(ep, [answer(tuple(ep.required_fields), d) for d in (0.01, 0.02, 1.5)])
    found = preflight.check(plan, {"edge_ai": s})
    assert [f.severity for f in found] == ["warn", "warn", "warn"]
    assert "under the demo settings" in found[0].problem and "at least 4s500ms" in found[0].problem
    assert "triggers[1] (latency_high)" in found[1].problem
    assert "triggers[2] (latency_sustained)" in found[2].problem
