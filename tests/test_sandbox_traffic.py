"""The sandbox's own request metrics (GET /metrics, as the reference service exposes them), the
probes' User-Agent in them, and ``canary-guard traffic``: simulated users split between tracks."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
import yaml
from canary_guard.sandbox.traffic import Split
from conftest import CLI, DATA, need_binary, start_sandbox
from prometheus_client.parser import text_string_to_metric_families

from canary_guard import __version__, contract
from canary_guard.plan import load_plan
from canary_guard.probe import build_request

PLAN = load_plan()
EP = {e.name: e for e in PLAN.endpoints}
REFERENCE = yaml.safe_load((DATA / "recoveryos-reference.yaml").read_text())
NO_KEY = {"RECOVERYOS_API_KEY": ""}


def samples(base: str) -> dict[str, list]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(smp: dict, name: str, **labels) -> float:
    return sum(s.value for s in smp.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def call(base: str, name: str, **kw) -> httpx.Response:
    ep = EP[name]
    return httpx.request(ep.method, base + ep.path, json=ep.body, timeout=10, **kw)


def test_metrics_are_named_and_labelled_exactly_as_the_reference(procs, tmp_path):
    base = start_sandbox(procs, "--latency", "none", "--no-access-log", env=NO_KEY)
    assert call(base, "edge_ai").status_code == 200
    fault = {"endpoint": "edge_ai", "mode": "error", "rate": 1}
    httpx.post(f"{base}/-/faults", json=fault).raise_for_status()
    assert call(base, "edge_ai").status_code == 500
    text = httpx.get(f"{base}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for m in REFERENCE["service_metrics"]:
        name = m["name"].removesuffix("_total")
        assert name in families, m["name"]
        fam = families[name]
        assert fam.type == m["type"] and fam.documentation
        series = [s for s in fam.samples if not s.name.endswith("_created")]
        assert series, m["name"]
        for s in series:
            assert set(s.labels) - {"le"} == set(m["labels"]), (s.name, s.labels)
    smp = samples(base)
    req = contract.SERVICE_REQUESTS
    assert {s.labels["status"] for s in smp[req]} == set(contract.SERVICE_STATUSES)
    # every plan endpoint and the service's own routes exist from the first scrape
    assert {s.labels["endpoint"] for s in smp[req]} == set(EP) | set(contract.SERVICE_ROUTES)
    # version and env are the same on every pod: the track comes from scraping
    assert {s.labels["version"] for s in smp[req]} == {smp[req][0].labels["version"]}
    assert value(smp, req, endpoint="edge_ai", status="success") == 1
    assert value(smp, req, endpoint="edge_ai", status="error") == 1
    assert value(smp, contract.SERVICE_ERRORS, endpoint="edge_ai", error_type="internal") == 1
    # default buckets of prometheus-client, 2 observations
    buckets = [s for s in smp[contract.SERVICE_DURATION + "_bucket"] if s.labels["endpoint"] == "edge_ai"]
    assert [b.labels["le"] for b in buckets][:3] == ["0.005", "0.01", "0.025"] and len(buckets) == 15
    assert value(smp, contract.SERVICE_DURATION + "_count", endpoint="edge_ai") == 2
    promtool = need_binary("promtool")
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    quiet = res.stdout.strip() == "" and res.stderr.strip() == ""
    assert res.returncode == 0 and quiet, res.stdout + res.stderr


def test_every_request_is_counted_with_its_error_type(procs):
    base = start_sandbox(procs, "--latency", "none", "--no-access-log", env={"RECOVERYOS_API_KEY": "k"})
    auth = {"Authorization": "Bearer k"}
    assert call(base, "edge_ai", headers=auth).status_code == 200
    assert call(base, "edge_ai").status_code == 401  # no key: still a request it served
    assert httpx.post(base + EP["edge_ai"].path, content=b"{bad", headers=auth).status_code == 400
    off = {"features": ["edge_ai"]}
    httpx.post(f"{base}/elite/config/disable", json=off, headers=auth).raise_for_status()
    assert call(base, "edge_ai", headers=auth).status_code == 503
    httpx.post(f"{base}/elite/config/enable", json={"features": "all"}, headers=auth).raise_for_status()
    limited = {"endpoint": "quantum_crypto", "mode": "rate_limited"}
    httpx.post(f"{base}/-/faults", json=limited).raise_for_status()
    assert call(base, "quantum_crypto", headers=auth).status_code == 429
    httpx.delete(f"{base}/-/faults").raise_for_status()
    # content faults are invisible to the service itself: a null body is a success to it
    httpx.post(f"{base}/-/faults", json={"endpoint": "homomorphic", "mode": "null"}).raise_for_status()
    assert call(base, "homomorphic", headers=auth).json() is None
    httpx.post(f"{base}/-/faults", json={"endpoint": "neuromorphic", "mode": "reset"}).raise_for_status()
    with pytest.raises(httpx.TransportError):
        call(base, "neuromorphic", headers=auth)
    assert httpx.get(f"{base}/elite/system-status", headers=auth).status_code == 200
    assert httpx.get(f"{base}/metrics").status_code == 200  # open, like /healthz
    smp = samples(base)
    errors = {(s.labels["endpoint"], s.labels["error_type"]): s.value
              for s in smp[contract.SERVICE_ERRORS]}
    assert errors == {("edge_ai", "unauthorized"): 1, ("edge_ai", "bad_request"): 1,
                      ("edge_ai", contract.FEATURE_DISABLED): 1, ("quantum_crypto", "rate_limited"): 1,
                      ("neuromorphic", "reset"): 1}
    req = contract.SERVICE_REQUESTS
    assert value(smp, req, endpoint="edge_ai", status="error") == 3
    assert value(smp, req, endpoint="edge_ai", status="success") == 1
    assert value(smp, req, endpoint="homomorphic", status="success") == 1
    assert value(smp, req, endpoint="system_status", status="success") == 1
    assert value(smp, contract.SERVICE_ACTIVE) == 0


def test_probes_carry_their_user_agent():
    req = build_request("canary", "http://127.0.0.1:1", EP["edge_ai"], {}, 5.0)
    ua = req.headers["User-Agent"]
    assert ua.startswith(f"{contract.PROBE_USER_AGENT_PRODUCT}/{__version__} ")


@pytest.mark.parametrize("items, expected", [
    ([], {"canary": 0.05, "stable": 0.95}),
    (["canary=25"], {"canary": 0.25, "stable": 0.75}),
    (["canary=100"], {"canary": 1.0}),
    (["canary=30", "stable=70"], {"canary": 0.3, "stable": 0.7}),
])
def test_split_shares(items, expected):
    split = Split.parse(["canary", "stable"], items, {"canary": 5})
    assert split.shares == pytest.approx(expected)


@pytest.mark.parametrize("items, message", [
    (["canry=5"], "--split 'canry=5': expected TRACK=PERCENT with a track of the plan (canary, stable)"),
    (["canary=five"], "'five' is not a percentage"),
    (["canary=120"], "between 0 and 100"),
    (["canary=60", "stable=60"], "add up to 120% (> 100%)"),
    (["canary=30", "stable=30"], "add up to 60%, not 100%"),
])
def test_bad_splits_are_refused(items, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Split.parse(["canary", "stable"], items, {})


def test_traffic_is_split_between_the_tracks_and_bounded(procs):
    canary = start_sandbox(procs, "--latency", "none", "--no-access-log", name="canary", env=NO_KEY)
    stable = start_sandbox(procs, "--latency", "none", "--no-access-log", name="stable", env=NO_KEY)
    res = subprocess.run(
        [*CLI, "traffic", "--target", f"canary={canary}", "--target", f"stable={stable}",
         "--split", "canary=20", "--rate", "200", "--requests", "400", "--duration", "30s",
         "--seed", "7", "--endpoint", "edge_ai", "--endpoint", "quantum_crypto"],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    tally = json.loads(res.stdout)
    assert tally["canary"]["sent"] + tally["stable"]["sent"] == 400
    assert 40 <= tally["canary"]["sent"] <= 120  # 20% of 400, drawn
    assert tally["canary"]["statuses"] == {"200": tally["canary"]["sent"]}
    for track, base in (("canary", canary), ("stable", stable)):
        smp = samples(base)
        counted = value(smp, contract.SERVICE_REQUESTS)
        assert counted == tally[track]["sent"]
        assert value(smp, contract.SERVICE_REQUESTS, endpoint="homomorphic") == 0
    # a fault on the canary shows in its tally and its counters only
    httpx.post(f"{canary}/-/faults", json={"endpoint": "*", "mode": "error"}).raise_for_status()
    res = subprocess.run(
        [*CLI, "traffic", "--target", f"canary={canary}", "--target", f"stable={stable}",
         "--split", "canary=50", "--rate", "100", "--duration", "1s", "--seed", "1"],
        capture_output=True, text=True, timeout=60)
    tally = json.loads(res.stdout)
    assert 60 <= tally["canary"]["sent"] + tally["stable"]["sent"] <= 110  # 1 s at 100/s
    assert tally["canary"]["errors"] == tally["canary"]["sent"] > 0
    assert tally["stable"]["errors"] == 0


@pytest.mark.parametrize("args, message", [
    (["--endpoint", "nope"], "--endpoint: no endpoint named nope"),
    (["--rate", "0"], "--rate: must be above 0"),
    (["--target", "canry=http://x"], "--target 'canry=http://x': expected NAME=URL"),
    (["--duration", "1.5m"], "write 1m30s"),
    (["--requests", "0"], "--requests: must be at least 1"),
])
def test_bad_traffic_options_are_named(args, message):
    res = subprocess.run([*CLI, "traffic", *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and message in res.stderr, res.stderr
