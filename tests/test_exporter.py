"""The exporter end to end: real HTTP on loopback against the sandbox, no patched clients."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request

import yaml
from conftest import CLI, free_port, need_binary, start_sandbox
from prometheus_client.parser import text_string_to_metric_families

from canary_guard.plan import load_plan

TOKEN = "s3cr3t-T0KEN-for-canary-guard-tests"


def write_plan(tmp_path, url: str, interval: float = 0.5, timeout: float = 0.4,
               concurrency: int = 64, max_body: int = 65536) -> str:
    data = yaml.safe_load(load_plan().to_yaml())
    data["targets"] = [{"name": "canary", "url": url, "guarded": True}]
    data.get("analysis", {}).pop("baseline", None)  # the baseline track is not probed here
    data["probe"] = {"interval": interval, "timeout": timeout, "max_body_bytes": max_body,
                     "concurrency": concurrency}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def start_exporter(procs, plan_path: str, *extra: str, env: dict | None = None,
                   name: str = "exporter") -> tuple[str, subprocess.Popen]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = procs.start([*CLI, "--log-level", "debug", "exporter", "--plan", plan_path,
                        "--listen", f"127.0.0.1:{port}", *extra], name,
                       ready_url=f"{url}/healthz", env=env)
    return url, proc


def http(method: str, url: str, body=None) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def fault(sandbox: str, endpoint: str, mode: str, **kw) -> None:
    http("POST", f"{sandbox}/-/faults", {"endpoint": endpoint, "mode": mode, **kw})


def scrape(url: str) -> str:
    return urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()


def values(text: str) -> dict[tuple, float]:
    """(sample name, track, endpoint, extra label value or '') -> value."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            lab = dict(s.labels)
            extra = lab.get("outcome") or lab.get("reason") or lab.get("kind") or lab.get("le") or ""
            out[(s.name, lab.get("track"), lab.get("endpoint"), extra)] = s.value
    return out


def wait_for(check, timeout: float = 30.0, every: float = 0.25):
    """Poll ``check()`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def total(v: dict, track: str, endpoint: str) -> float:
    return sum(v[("canary_probes_total", track, endpoint, o)]
               for o in ("success", "error", "null", "disabled"))


def test_every_outcome_and_error_reason(procs, tmp_path):
    sandbox = start_sandbox(procs, env={"RECOVERYOS_API_KEY": ""})
    fault(sandbox, "continual_learning", "hang")
    fault(sandbox, "federated_learning", "reset")
    fault(sandbox, "edge_ai", "invalid_json")
    fault(sandbox, "differential_privacy", "huge", size_bytes=1 << 20)
    fault(sandbox, "causal_analysis", "rate_limited", retry_after=2)
    fault(sandbox, "neuromorphic", "pii")
    fault(sandbox, "graph_neural", "null")
    fault(sandbox, "quantum_crypto", "null_field")
    fault(sandbox, "explainable_ai", "error")
    http("POST", f"{sandbox}/elite/config/disable", {"features": ["homomorphic_encryption"]})
    closed = f"http://127.0.0.1:{free_port()}"
    url, proc = start_exporter(procs, write_plan(tmp_path, sandbox), "--target", f"down={closed}")

    expected = {
        ("canary_probe_errors_total", "continual_learning", "timeout"),
        ("canary_probe_errors_total", "federated_learning", "reset"),
        ("canary_probe_errors_total", "edge_ai", "invalid_json"),
        ("canary_probe_errors_total", "differential_privacy", "body_too_large"),
        ("canary_probe_errors_total", "causal_analysis", "rate_limited"),
        ("canary_probe_skipped_total", "causal_analysis", "backoff"),
        ("canary_probe_pii_exposures_total", "neuromorphic", "email"),
        ("canary_probe_pii_exposures_total", "neuromorphic", "ssn"),
        ("canary_probe_pii_exposures_total", "neuromorphic", "phone"),
        ("canary_probe_pii_exposures_total", "neuromorphic", "card"),
        ("canary_probes_total", "graph_neural", "null"),
        ("canary_probes_total", "quantum_crypto", "null"),
        ("canary_probe_errors_total", "explainable_ai", "http_5xx"),
        ("canary_probes_total", "homomorphic", "disabled"),
    }

    def missing():
        v = values(scrape(url))
        gone = {k for k in expected if not v[(k[0], "canary", k[1], k[2])] > 0}
        if v[("canary_probe_null_streak", "canary", "graph_neural", "")] < 3:
            gone.add("null streak")
        if v[("canary_probe_errors_total", "down", "edge_ai", "connect")] < 1:
            gone.add("connect")
        seen["missing"] = sorted(map(str, gone))
        return None if gone else v

    seen: dict = {}
    try:
        v = wait_for(missing)
    except AssertionError:
        raise AssertionError(f"never seen: {seen['missing']}\n{procs.log('exporter')[-3000:]}") from None
    c = "canary"
    # exactly one outcome per probe, and the ones that must not happen did not
    assert v[("canary_probes_total", c, "neuromorphic", "success")] > 0  # PII is not an outcome
    assert v[("canary_probes_total", c, "homomorphic", "error")] == 0  # disabled is no error
    assert v[("canary_probes_total", c, "graph_neural", "success")] == 0
    assert v[("canary_probe_null_streak", c, "graph_neural", "")] == v[("canary_probes_total", c,
                                                                         "graph_neural", "null")]
    assert v[("canary_probe_success", c, "graph_neural", "")] == 0
    assert v[("canary_probe_success", c, "neuromorphic", "")] == 1
    for ep in ("graph_neural", "explainable_ai", "edge_ai"):
        errors = sum(v[("canary_probe_errors_total", c, ep, r)] for r in
                     ("timeout", "reset", "invalid_json", "http_5xx", "http_4xx", "connect"))
        assert errors == v[("canary_probes_total", c, ep, "error")]
    # a timeout gets no latency observation; a complete response does
    assert v[("canary_probe_duration_seconds_count", c, "continual_learning", "")] == 0
    assert v[("canary_probe_duration_seconds_count", c, "explainable_ai", "")] > 0
    # the 429 backs off: fewer probes than its neighbours
    assert total(v, c, "causal_analysis") < total(v, c, "explainable_ai")
    assert v[("canary_probe_status_code", c, "causal_analysis", "")] == 429
    assert v[("canary_guard_info", None, None, "")] == 1

    # promtool on the real /metrics prints nothing
    promtool = need_binary("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=scrape(url), capture_output=True,
                           text=True, timeout=60)
    assert (check.returncode, check.stdout + check.stderr) == (0, "")

    # the service recovers: the null streak goes back to 0, and a 404 is http_4xx
    http("DELETE", f"{sandbox}/-/faults")
    http("POST", f"{sandbox}/elite/config/enable", {"features": ["homomorphic_encryption"]})
    fault(sandbox, "explainable_ai", "error", status_code=404)

    def recovered():
        v = values(scrape(url))
        ok = (v[("canary_probe_null_streak", c, "graph_neural", "")] == 0
              and v[("canary_probe_success", c, "graph_neural", "")] == 1
              and v[("canary_probe_success", c, "homomorphic", "")] == 1
              and v[("canary_probe_errors_total", c, "explainable_ai", "http_4xx")] > 0)
        return v if ok else None

    v = wait_for(recovered)
    assert v[("canary_probes_total", c, "graph_neural", "null")] >= 3  # counters keep counting

    # log lines never carry response content
    log = procs.log("exporter")
    for content in ("jane.doe@example.com", "123-45-6789", "4111 1111 1111 1111", "(555) 123-4567"):
        assert content not in log
    assert "PII exposure in responses" in log and "kinds=email,ssn,phone,card" in log

    # SIGTERM with a hung probe in flight: a clean, prompt exit
    fault(sandbox, "continual_learning", "hang")
    time.sleep(1.0)
    assert procs.stop(proc, signal.SIGTERM) == 0
    assert "msg=stopped" in procs.log("exporter")


def test_a_hung_endpoint_does_not_slow_the_others(procs, tmp_path):
    # instant answers: the slots are held by the hung probes alone, not by homomorphic's 0.45 s
    sandbox = start_sandbox(procs, "--latency", "none", env={"RECOVERYOS_API_KEY": ""})
    hung = {"continual_learning", "federated_learning", "edge_ai"}
    for ep in hung:
        fault(sandbox, ep, "hang")
    # 3 hung probes hold 3 of 4 slots for most of each interval: the rest must still keep pace
    url, _ = start_exporter(procs, write_plan(tmp_path, sandbox, interval=1.0, timeout=0.9,
                                              concurrency=4))
    wait_for(lambda: values(scrape(url))[("canary_probe_errors_total", "canary", "edge_ai",
                                          "timeout")] >= 1)
    t0, v0 = time.monotonic(), values(scrape(url))
    time.sleep(5)
    t1, v1 = time.monotonic(), values(scrape(url))
    expected = int(t1 - t0)  # one probe per second per endpoint
    healthy = [e.name for e in load_plan().endpoints if e.name not in hung]
    for ep in healthy:
        done = total(v1, "canary", ep) - total(v0, "canary", ep)
        assert done >= expected - 1, (ep, done, expected)
        assert v1[("canary_probe_skipped_total", "canary", ep, "busy")] == 0
        assert v1[("canary_probes_total", "canary", ep, "success")] == total(v1, "canary", ep)
    for ep in hung:  # the hung ones neither pile up nor stop: at most one probe in flight each
        done = total(v1, "canary", ep) - total(v0, "canary", ep)
        assert 1 <= done <= expected + 1, (ep, done)


def test_a_timeout_longer_than_the_interval_measures_slow_answers(procs, tmp_path):
    sandbox = start_sandbox(procs, env={"RECOVERYOS_API_KEY": ""})
    fault(sandbox, "edge_ai", "slow", latency_ms=1200)
    url, _ = start_exporter(procs, write_plan(tmp_path, sandbox, interval=0.5, timeout=3.0))

    def slow_seen():
        v = values(scrape(url))
        ok = (v[("canary_probes_total", "canary", "edge_ai", "success")] >= 2
              and v[("canary_probe_skipped_total", "canary", "edge_ai", "busy")] >= 2)
        return v if ok else None

    v = wait_for(slow_seen)
    assert v[("canary_probe_errors_total", "canary", "edge_ai", "timeout")] == 0
    assert v[("canary_probe_duration_seconds_bucket", "canary", "edge_ai", "1.0")] == 0  # all > 1 s
    assert v[("canary_probe_duration_seconds_count", "canary", "edge_ai", "")] >= 2
    assert v[("canary_probe_skipped_total", "canary", "quantum_crypto", "busy")] == 0  # a fast one


def test_the_auth_header_is_sent_and_the_token_never_shown(procs, tmp_path):
    sandbox = start_sandbox(procs, env={"RECOVERYOS_API_KEY": TOKEN})
    plan = write_plan(tmp_path, sandbox)
    with_key, _ = start_exporter(procs, plan, env={"RECOVERYOS_API_KEY": TOKEN}, name="with_key")
    without, _ = start_exporter(procs, plan, env={"RECOVERYOS_API_KEY": ""}, name="without")
    endpoints = [e.name for e in load_plan().endpoints]

    def all_answered(url, outcome, reason=None):
        def check():
            v = values(scrape(url))
            if reason:
                return all(v[("canary_probe_errors_total", "canary", e, reason)] > 0 for e in endpoints)
            return all(v[("canary_probes_total", "canary", e, outcome)] > 0 for e in endpoints)
        return check

    wait_for(all_answered(with_key, "success"))
    wait_for(all_answered(without, "error", "http_4xx"))
    v = values(scrape(with_key))
    assert all(v[("canary_probes_total", "canary", e, "error")] == 0 for e in endpoints)
    assert all(v[("canary_probes_total", "canary", e, "success")] == 0
               for e in endpoints for v in [values(scrape(without))])
    for text in (scrape(with_key), procs.log("with_key"), procs.log("without"),
                 urllib.request.urlopen(f"{with_key}/healthz").read().decode(),
                 urllib.request.urlopen(f"{with_key}/").read().decode()):
        assert TOKEN not in text
        assert TOKEN[:12] not in text
    assert "auth header set" in procs.log("with_key")
    assert "no API token" in procs.log("without")


def test_bad_arguments_exit_2():
    for args in (["--target", "Bad Name=http://x"], ["--target", "canary=ftp://x"],
                 ["--listen", "nowhere"], ["--interval", "0s"], ["--timeout", "soon"]):
        proc = subprocess.run([*CLI, "exporter", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "canary-guard exporter:" in proc.stderr


def test_shards_split_the_pairs_between_replicas(procs, tmp_path):
    from canary_guard.exporter.app import in_shard

    sandbox = start_sandbox(procs, env={"RECOVERYOS_API_KEY": ""})
    plan_path = write_plan(tmp_path, sandbox)
    seen = []
    for k in range(3):
        url, _ = start_exporter(procs, plan_path, "--shard", f"{k}/3", name=f"exporter-{k}")
        fams = {f.name: f for f in text_string_to_metric_families(scrape(url))}
        seen.append({s.labels["endpoint"] for s in fams["canary_probe_null_streak"].samples})
    everyone = {e.name for e in load_plan().endpoints}
    assert set().union(*seen) == everyone  # every endpoint is probed by some replica ...
    assert sum(len(s) for s in seen) == len(everyone)  # ... and by exactly one
    assert all(seen), "10 endpoints over 3 shards: none should be empty"
    assert [in_shard("canary", "edge_ai", (k, 3)) for k in range(3)].count(True) == 1
    bad = subprocess.run([*CLI, "exporter", "--plan", plan_path, "--shard", "3/3"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--shard '3/3'" in bad.stderr


def test_an_endpoint_own_timeout_replaces_the_plan_timeout(procs, tmp_path):
    sandbox = start_sandbox(procs, "--latency", "none", env={"RECOVERYOS_API_KEY": ""})
    for ep in ("edge_ai", "continual_learning"):
        fault(sandbox, ep, "slow", latency_ms=600)
    path = write_plan(tmp_path, sandbox, interval=1.0, timeout=3.0)
    data = yaml.safe_load(open(path).read())
    next(e for e in data["endpoints"] if e["name"] == "edge_ai")["timeout"] = "300ms"
    open(path, "w").write(yaml.safe_dump(data, sort_keys=False))
    url, _ = start_exporter(procs, path)

    def both_seen():
        v = values(scrape(url))
        return v if (v[("canary_probe_errors_total", "canary", "edge_ai", "timeout")] >= 2 and
                     v[("canary_probes_total", "canary", "continual_learning", "success")] >= 2) else None

    v = wait_for(both_seen)
    assert v[("canary_probes_total", "canary", "edge_ai", "success")] == 0  # cut off at 300 ms
    assert v[("canary_probe_errors_total", "canary", "continual_learning", "timeout")] == 0  # 3 s
