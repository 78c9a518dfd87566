"""The simulated RecoveryOS: real HTTP on loopback against ``canary-guard sandbox``."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from canary_guard.sandbox.latency import REFERENCE as LATENCY
from canary_guard.sandbox.latency import ServiceTime
from canary_guard.sandbox.responses import PII_SAMPLES, RESPONSE_FIELDS, Bodies
from conftest import DATA, Processes, start_sandbox

from canary_guard.plan import load_plan

PLAN = load_plan()
EP = {e.name: e for e in PLAN.endpoints}
REFERENCE = yaml.safe_load((DATA / "recoveryos-reference.yaml").read_text())


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One sandbox for the tests that reset it between them (keeps the suite lean)."""
    logdir = tmp_path_factory.mktemp("sandbox-logs")
    procs = Processes(logdir)
    try:
        yield start_sandbox(procs, "--seed", "3", env={"RECOVERYOS_API_KEY": ""})
    finally:
        procs.stop_all()


@pytest.fixture
def sb(shared):
    """The shared sandbox with no faults and every feature enabled."""
    with httpx.Client(base_url=shared, timeout=10) as client:
        client.delete("/-/faults").raise_for_status()
        client.post("/elite/config/enable", json={"features": "all"}).raise_for_status()
        yield client


def call(client: httpx.Client, name: str, **kw) -> httpx.Response:
    ep = EP[name]
    return client.request(ep.method, ep.path, json=ep.body, **kw)


def fault(client: httpx.Client, **spec) -> dict:
    resp = client.post("/-/faults", json=spec)
    assert resp.status_code == 201, resp.text
    return resp.json()


def assert_error_shape(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"detail", "status_code", "timestamp"}
    assert body["status_code"] == status and body["detail"] and body["timestamp"].endswith("Z")
    return body


# -- healthy service ---------------------------------------------------------------------------

def test_every_endpoint_answers_exactly_the_reference_fields(sb):
    """A healthy answer has exactly the real service's top-level fields, every one non-null."""
    documented = {e["name"]: e["response_fields"] for e in REFERENCE["endpoints"]}
    assert set(documented) == set(EP)
    for ep in PLAN.endpoints:
        resp = call(sb, ep.name)
        assert resp.status_code == 200, (ep.name, resp.text)
        assert resp.headers["content-type"].startswith("application/json")
        body = resp.json()
        assert list(body) == documented[ep.name], ep.name  # no invented `result`, in order
        assert all(v is not None for v in body.values()), (ep.name, body)
        assert body["timestamp"].endswith("Z")
        # realistic negatives for a PII detector, nested: ids, timestamps, numbers, markers
        text = resp.text
        assert text.count('"request_id"') == 1 or ep.name == "quantum_crypto", ep.name
        for _, sample in PII_SAMPLES.values():
            assert sample not in text
        assert "@" not in text.replace("[EMAIL_REDACTED]", "")


def test_the_shipped_plan_requires_what_the_service_returns():
    """The shipped plan's required_fields are the reference's response_fields; the sandbox's
    table is the reference's too (a plan that required more would see every answer as null)."""
    for ref in REFERENCE["endpoints"]:
        assert EP[ref["name"]].required_fields == ref["response_fields"], ref["name"]
        assert RESPONSE_FIELDS[ref["name"]] == tuple(ref["response_fields"]), ref["name"]
        assert EP[ref["name"]].path == ref["path"] and EP[ref["name"]].feature == ref["feature"]


def test_the_sandbox_never_invents_a_field_a_plan_requires():
    """Only another plan's endpoints get their required fields filled in."""
    bodies = Bodies(random.Random(5))
    body = bodies.build("causal_analysis", ["result", "target"], EP["causal_analysis"].body)
    assert "result" not in body and body["target"]
    other = bodies.build("orders", ["order_id", "meta.version"], {})
    assert other["order_id"] and other["meta"]["version"]


def test_latency_profiles_follow_the_reference():
    """Most endpoints 5-25 ms; homomorphic median 0.35-0.55 s, p95 ~0.9 s, slowest ~1.4 s."""
    service = ServiceTime("reference", rng=random.Random(11))
    for name in EP:
        xs = sorted(service.draw(name) for _ in range(4000))
        median, p95, top = xs[2000], xs[3800], xs[-1]
        if name == "homomorphic":
            assert 0.35 <= median <= 0.55 and 0.8 <= p95 <= 1.0 and 1.2 <= top <= 1.4, (median, p95, top)
        else:
            assert 0.005 <= median <= 0.025 and top <= 0.025, (name, median, top)
    busy = ServiceTime("reference", slowdown=1.5, rng=random.Random(11))
    xs = sorted(busy.draw("homomorphic") for _ in range(4000))
    assert 1.2 <= xs[3800] <= 1.5  # p95 ~1.4 s under contention, as observed
    assert ServiceTime("none").draw("homomorphic") == 0.0
    assert set(LATENCY) == set(EP)


@pytest.mark.parametrize("kw, word", [({"slowdown": 0.5}, "slowdown"), ({"cores": -1}, "cores")])
def test_bad_latency_settings_name_the_setting(kw, word):
    with pytest.raises(ValueError, match=word):
        ServiceTime("reference", **kw)


def test_one_core_queues_answers_behind_a_slow_one():
    """cores=1: a quick endpoint asked while homomorphic works waits for it (contention)."""
    async def scenario() -> float:
        service = ServiceTime("reference", cores=1, rng=random.Random(2))
        slow = asyncio.create_task(service.work("homomorphic"))
        await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await service.work("edge_ai")
        waited = time.monotonic() - t0
        await slow
        return waited

    assert asyncio.run(scenario()) >= 0.1  # homomorphic takes >= ~0.15 s even at its fastest


def test_reference_response_fields(sb):
    """Values echo the request where the real service does."""
    fed = call(sb, "federated_learning").json()
    assert fed["client_id"] == "clinic_001" and fed["global_weights_updated"] is True
    assert isinstance(fed["federated_round"], int)
    edge = call(sb, "edge_ai").json()
    assert edge["model_type"] == "emotion_classifier"
    assert call(sb, "homomorphic").json()["result"] == 15.0  # secure_sum of 1..5


def test_health_status_and_metrics_count_what_was_served(sb):
    health = sb.get("/healthz").json()
    assert health["status"] == "ok" and health["service"] == "recoveryos"
    status = sb.get("/elite/system-status").json()
    assert set(status["features"]) == set(PLAN.features())
    assert all(f["enabled"] is True and f["rollout_percentage"] == 100 for f in status["features"].values())

    before = sb.get("/elite/metrics").json()["endpoints"]
    for _ in range(3):
        call(sb, "neuromorphic")
    fault(sb, endpoint="neuromorphic", mode="error")
    call(sb, "neuromorphic")
    after = sb.get("/elite/metrics").json()["endpoints"]
    n0, n1 = before["neuromorphic"], after["neuromorphic"]
    assert n1["request_count"] - n0["request_count"] == 4
    assert n1["error_count"] - n0["error_count"] == 1
    assert 0 < n1["success_rate"] < 1 and n1["avg_latency_ms"] >= 0
    assert after["graph_neural"]["request_count"] == before["graph_neural"]["request_count"]


def test_request_bodies_are_validated(sb):
    ep = EP["edge_ai"]
    resp = sb.post(ep.path, content=b'{"model_type": ', headers={"content-type": "application/json"})
    assert "malformed JSON" in assert_error_shape(resp, 400)["detail"]
    assert "JSON object" in assert_error_shape(sb.post(ep.path, json=[1, 2]), 400)["detail"]
    assert "model_type" in assert_error_shape(sb.post(ep.path, json={"other": 1}), 400)["detail"]
    assert_error_shape(sb.post("/elite/no-such-thing", json={}), 404)
    assert_error_shape(sb.get(ep.path), 405)


# -- fault modes --------------------------------------------------------------------------------

def test_error_and_rate_limited(sb):
    fault(sb, endpoint="edge_ai", mode="error")
    assert assert_error_shape(call(sb, "edge_ai"), 500)["detail"] == "Internal server error"
    assert call(sb, "homomorphic").status_code == 200  # other endpoints untouched
    fault(sb, endpoint="homomorphic", mode="error", status_code=502)
    assert_error_shape(call(sb, "homomorphic"), 502)
    fault(sb, endpoint="quantum_crypto", mode="rate_limited", retry_after=7)
    resp = call(sb, "quantum_crypto")
    assert_error_shape(resp, 429)
    assert resp.headers["Retry-After"] == "7"


def test_slow_adds_latency_then_answers_normally(sb):
    fault(sb, endpoint="causal_analysis", mode="slow", latency_ms=300)
    started = time.monotonic()
    resp = call(sb, "causal_analysis")
    assert time.monotonic() - started >= 0.3  # a lower bound: the injected sleep, not a benchmark
    assert resp.status_code == 200 and resp.json()["top_risk_factors"] is not None


def test_null_and_null_field(sb):
    fault(sb, endpoint="graph_neural", mode="null")
    resp = call(sb, "graph_neural")
    assert resp.status_code == 200 and resp.text == "null" and resp.json() is None

    fault(sb, endpoint="federated_learning", mode="null_field")
    body = call(sb, "federated_learning").json()
    assert "global_weights_updated" in body and body["global_weights_updated"] is None
    assert body["client_id"] == "clinic_001"  # only one field is nulled

    fault(sb, endpoint="continual_learning", mode="null_field", field="knowledge_retention")
    body = call(sb, "continual_learning").json()
    assert body["knowledge_retention"] is None and body["task_id"] is not None


def test_pii_leaks_every_kind_or_the_chosen_one(sb):
    fault(sb, endpoint="explainable_ai", mode="pii")
    resp = call(sb, "explainable_ai")
    assert resp.status_code == 200 and resp.json()["prediction"]
    for _, sample in PII_SAMPLES.values():
        assert sample in resp.text
    assert "jane.doe@example.com" in resp.text and "123-45-6789" in resp.text
    assert "(555) 123-4567" in resp.text and "4111 1111 1111 1111" in resp.text

    fault(sb, endpoint="differential_privacy", mode="pii", kind="ssn")
    text = call(sb, "differential_privacy").text
    assert "123-45-6789" in text and "jane.doe@example.com" not in text and "4111" not in text


def test_invalid_json_is_labelled_json_but_is_not(sb):
    fault(sb, endpoint="neuromorphic", mode="invalid_json")
    resp = call(sb, "neuromorphic")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)


def test_huge_body_goes_far_beyond_one_mebibyte(sb):
    fault(sb, endpoint="homomorphic", mode="huge")
    size = 0
    with sb.stream("POST", EP["homomorphic"].path, json=EP["homomorphic"].body) as resp:
        assert resp.status_code == 200
        assert "content-length" not in resp.headers  # chunked: the prober must bound its read
        for chunk in resp.iter_bytes():
            size += len(chunk)
    assert size == 8 << 20
    # a client that stops reading early does not upset the sandbox
    with sb.stream("POST", EP["homomorphic"].path, json=EP["homomorphic"].body) as resp:
        next(resp.iter_bytes())
    assert sb.get("/healthz").status_code == 200


def test_reset_drops_the_connection_without_a_response(sb):
    fault(sb, endpoint="quantum_crypto", mode="reset")
    with pytest.raises(httpx.TransportError):
        call(sb, "quantum_crypto")
    # on the wire: not a single byte of response comes back
    url = urlsplit(str(sb.base_url))
    body = json.dumps(EP["quantum_crypto"].body).encode()
    request = (f"POST {EP['quantum_crypto'].path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection((url.hostname, url.port), timeout=5) as s:
        s.sendall(request)
        try:
            received = s.recv(65536)
        except ConnectionResetError:
            received = b""
    assert received == b""
    assert call(sb, "edge_ai").status_code == 200


def test_hang_never_answers_and_blocks_nobody(sb):
    fault(sb, endpoint="continual_learning", mode="hang")
    hung, other = EP["continual_learning"], EP["graph_neural"]

    async def scenario():
        async with httpx.AsyncClient(base_url=str(sb.base_url)) as client:
            hanging = asyncio.create_task(
                client.post(hung.path, json=hung.body, timeout=httpx.Timeout(5, read=1.5)))
            await asyncio.sleep(0.1)
            answers = [await client.post(other.path, json=other.body, timeout=1.0) for _ in range(5)]
            assert not hanging.done()  # still hung while the others answered
            with pytest.raises(httpx.ReadTimeout):
                await hanging
            return answers

    answers = asyncio.run(scenario())
    assert [r.status_code for r in answers] == [200] * 5


def test_wildcard_count_listing_and_clearing(sb):
    f1 = fault(sb, endpoint="*", mode="error")
    assert all(call(sb, e.name).status_code == 500 for e in PLAN.endpoints)
    f2 = fault(sb, endpoint="edge_ai", mode="null")  # newest wins where both match
    assert call(sb, "edge_ai").text == "null"
    listed = sb.get("/-/faults").json()["faults"]
    assert [f["id"] for f in listed] == [f1["id"], f2["id"]]
    assert listed[0]["applied"] == len(PLAN.endpoints)
    assert sb.delete(f"/-/faults/{f2['id']}").status_code == 200
    assert_error_shape(sb.delete(f"/-/faults/{f2['id']}"), 404)
    assert call(sb, "edge_ai").status_code == 500
    assert sb.delete("/-/faults").json()["cleared"] == 1
    assert sb.get("/-/faults").json()["faults"] == []
    assert call(sb, "edge_ai").status_code == 200

    fault(sb, endpoint="edge_ai", mode="error", count=2)  # the next two requests only
    assert [call(sb, "edge_ai").status_code for _ in range(3)] == [500, 500, 200]


@pytest.mark.parametrize("spec, problem", [
    ({"endpoint": "nope", "mode": "error"}, "unknown endpoint 'nope'"),
    ({"mode": "error"}, "endpoint: required"),
    ({"endpoint": "*", "mode": "explode"}, "'explode' is not a fault mode"),
    ({"endpoint": "*"}, "mode: missing"),
    ({"endpoint": "*", "mode": "error", "rate": 1.5}, "rate: 1.5 is out of range"),
    ({"endpoint": "*", "mode": "error", "rate": "often"}, "rate: must be a number"),
    ({"endpoint": "*", "mode": "slow"}, "latency_ms"),
    ({"endpoint": "*", "mode": "slow", "latency_ms": -5}, "latency_ms: -5 is out of range"),
    ({"endpoint": "*", "mode": "pii", "kind": "dna"}, "'dna' is not a PII kind"),
    ({"endpoint": "*", "mode": "error", "kind": "ssn"}, "kind: only applies to mode pii"),
    ({"endpoint": "edge_ai", "mode": "null_field", "field": "result"}, "not a required field of edge_ai"),
    ({"endpoint": "*", "mode": "error", "colour": "red"}, "colour: unknown field"),
    (["error"], "must be a JSON object"),
])
def test_bad_fault_requests_name_the_problem(sb, spec, problem):
    detail = assert_error_shape(sb.post("/-/faults", json=spec), 400)["detail"]
    assert problem in detail
    assert sb.get("/-/faults").json()["faults"] == []


def test_malformed_fault_json(sb):
    resp = sb.post("/-/faults", content=b"{", headers={"content-type": "application/json"})
    assert "malformed JSON" in assert_error_shape(resp, 400)["detail"]


# -- feature flags -------------------------------------------------------------------------------

def test_disable_then_enable_a_feature(sb):
    resp = sb.post("/elite/config/disable", json={"features": ["edge_ai", "causal_ai"]})
    assert resp.status_code == 200 and resp.json()["disabled"] == ["edge_ai", "causal_ai"]
    assert assert_error_shape(call(sb, "edge_ai"), 503)["detail"] == "Edge AI not enabled"
    assert assert_error_shape(call(sb, "causal_analysis"), 503)["detail"] == "Causal AI not enabled"
    assert call(sb, "neuromorphic").status_code == 200
    status = sb.get("/elite/system-status").json()
    assert status["features"]["edge_ai"]["enabled"] is False
    assert status["features"]["edge_ai"]["rollout_percentage"] == 0
    assert status["features"]["neuromorphic"]["enabled"] is True

    assert sb.post("/elite/config/enable", json={"features": ["edge_ai"]}).status_code == 200
    assert call(sb, "edge_ai").status_code == 200
    assert call(sb, "causal_analysis").status_code == 503
    assert sb.get("/elite/system-status").json()["features"]["edge_ai"]["enabled"] is True


def test_disable_rejects_unknown_features(sb):
    detail = assert_error_shape(sb.post("/elite/config/disable", json={"features": ["warp_drive"]}), 400)
    assert "warp_drive" in detail["detail"]
    assert_error_shape(sb.post("/elite/config/disable", json={"feature": "edge_ai"}), 400)
    assert_error_shape(sb.post("/elite/config/disable", json={"features": []}), 400)
    assert all(f["enabled"] for f in sb.get("/elite/system-status").json()["features"].values())


# -- separate processes: seed, auth, custom plan, shutdown ----------------------------------------

def test_partial_rate_applies_to_about_that_share_repeatably(procs):
    runs = []
    for i in range(2):
        url = start_sandbox(procs, "--seed", "42", name=f"sandbox{i}", env={"RECOVERYOS_API_KEY": ""})
        with httpx.Client(base_url=url, timeout=10) as client:
            fault(client, endpoint="edge_ai", mode="error", rate=0.3)
            runs.append([call(client, "edge_ai").status_code for _ in range(200)])
    counts = Counter(runs[0])
    assert set(counts) == {200, 500}
    assert 40 <= counts[500] <= 80  # 30% of 200 = 60, well within binomial spread
    assert runs[0] == runs[1]  # same seed, same draws


def test_auth_is_required_when_the_key_is_set(procs):
    key = "sk-test-4f7a1c"
    url = start_sandbox(procs, name="authed", env={"RECOVERYOS_API_KEY": key})
    ep = EP["edge_ai"]
    with httpx.Client(base_url=url, timeout=10) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key},
                        {"Authorization": f"Basic {key}"}):
            for method, path in ((ep.method, ep.path), ("GET", "/elite/metrics"),
                                 ("GET", "/elite/system-status"), ("POST", "/elite/config/disable")):
                resp = client.request(method, path, json=ep.body, headers=headers)
                assert_error_shape(resp, 401)
        good = {"Authorization": f"Bearer {key}"}
        assert client.post(ep.path, json=ep.body, headers=good).status_code == 200
        assert client.get("/elite/metrics", headers=good).status_code == 200
        assert client.get("/healthz").status_code == 200  # open
        assert client.get("/-/faults").status_code == 200  # open
    assert key not in procs.log("authed")


def test_a_custom_plan_is_served_instead(procs, tmp_path):
    plan_file = tmp_path / "shop.yaml"
    plan_file.write_text("""
version: 1
name: shop
service: shop
targets: [{name: canary, url: "http://localhost:9000", guarded: true}]
auth: {token_env: SHOP_API_KEY}
endpoints:
  - name: orders
    path: /api/v1/orders
    feature: checkout
    body: {item: book, quantity: 2}
    required_fields: [order_id, total, timestamp]
  - name: catalog
    method: GET
    path: /api/v1/catalog
    required_fields: [items_count, meta.version]
""")
    url = start_sandbox(procs, "--plan", str(plan_file), name="shop",
                        env={"RECOVERYOS_API_KEY": "ignored-by-this-plan"})
    with httpx.Client(base_url=url, timeout=10) as client:
        order = client.post("/api/v1/orders", json={"item": "pen", "quantity": 1})
        assert order.status_code == 200
        assert all(order.json()[f] is not None for f in ("order_id", "total", "timestamp"))
        catalog = client.get("/api/v1/catalog").json()
        assert catalog["items_count"] is not None and catalog["meta"]["version"] is not None
        assert client.post("/elite/edge-ai/deploy", json={"model_type": "x"}).status_code == 404
        assert "quantity" in client.post("/api/v1/orders", json={"item": "pen"}).json()["detail"]

        assert set(client.get("/elite/system-status").json()["features"]) == {"checkout"}
        client.post("/elite/config/disable", json={"features": ["checkout"]}).raise_for_status()
        assert client.post("/api/v1/orders", json={"item": "pen", "quantity": 1}).json()["detail"] == (
            "Checkout not enabled")
        assert client.get("/api/v1/catalog").status_code == 200

        assert client.post("/-/faults", json={"endpoint": "edge_ai", "mode": "error"}).status_code == 400
        fault(client, endpoint="catalog", mode="null_field", field="meta.version")
        assert client.get("/api/v1/catalog").json()["meta"]["version"] is None
        metrics = client.get("/elite/metrics").json()["endpoints"]
        assert set(metrics) == {"orders", "catalog"} and metrics["catalog"]["request_count"] == 3


def test_sigterm_stops_cleanly_even_with_a_hung_request(procs):
    url = start_sandbox(procs, name="stopper", env={"RECOVERYOS_API_KEY": ""})
    proc = procs.procs[-1]
    ep = EP["homomorphic"]
    with httpx.Client(base_url=url, timeout=10) as client:
        fault(client, endpoint="*", mode="hang")
        with pytest.raises(httpx.ReadTimeout):
            client.post(ep.path, json=ep.body, timeout=httpx.Timeout(5, read=0.3))
    assert procs.stop(proc, signal.SIGTERM) == 0
    assert "sandbox stopped" in procs.log("stopper")


def test_startup_options(procs):
    """--fault preloads faults, --latency-ms slows answers, --api-key-env picks the key's variable."""
    url = start_sandbox(
        procs, "--fault", '{"endpoint": "edge_ai", "mode": "null"}', "--latency-ms", "200",
        "--api-key-env", "OTHER_KEY", "--no-access-log", name="options",
        env={"RECOVERYOS_API_KEY": "not-this-one", "OTHER_KEY": "this-one"},
    )
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": "Bearer this-one"}) as client:
        assert [f["mode"] for f in client.get("/-/faults").json()["faults"]] == ["null"]
        started = time.monotonic()
        assert call(client, "edge_ai").text == "null"
        assert time.monotonic() - started >= 0.1  # at least half the base latency
        assert call(client, "homomorphic").status_code == 200
    assert "msg=request " not in procs.log("options")


def test_bad_startup_fault_is_refused(tmp_path):
    import subprocess

    from conftest import CLI, free_port

    out = subprocess.run([*CLI, "sandbox", "--listen", f"127.0.0.1:{free_port()}",
                          "--fault", '{"endpoint": "*", "mode": "melt"}'],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "'melt' is not a fault mode" in out.stderr
    for option, value in (("--slowdown", "0.5"), ("--cores", "-2")):
        out = subprocess.run([*CLI, "sandbox", "--listen", f"127.0.0.1:{free_port()}", option, value],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and out.stderr.startswith(f"{option}: must be"), out.stderr


def test_create_app_serves_in_process():
    """The documented Python entry: create_app(plan, api_key, seed) -> aiohttp Application."""
    from aiohttp import web
    from canary_guard.sandbox.app import create_app

    async def scenario():
        runner = web.AppRunner(create_app(PLAN, api_key="k", seed=1))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                ep = EP["edge_ai"]
                denied = await client.post(ep.path, json=ep.body)
                ok = await client.post(ep.path, json=ep.body, headers={"Authorization": "Bearer k"})
                return denied.status_code, ok.status_code
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == (401, 200)
