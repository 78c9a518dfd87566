"""The simulated service: the plan's endpoints, the documented admin routes, fault injection.

``create_app(plan, api_key=None, seed=None)`` builds the aiohttp Application; nothing runs at
import time, so a test can serve it in-process (``aiohttp.test_utils`` or ``web.AppRunner``).
One asyncio loop serves everything: a hung or slow request is a sleeping coroutine, never a
blocked thread, so the other endpoints keep answering.

Routes:
  every plan endpoint at its method + path     realistic JSON, or what a fault says
  GET  /healthz                                 {"status": "ok", ...}            (open)
  GET  /elite/system-status                     features with enabled / rollout_percentage
  GET  /elite/metrics                           per-endpoint counts of what was served
  POST /elite/config/disable  {"features": []}  a disabled feature's endpoint answers 503
  POST /elite/config/enable   {"features": []}  undo (an empty list or "all": every feature)
  POST/GET/DELETE /-/faults, DELETE /-/faults/{id}   fault injection          (open)
  GET  /-/stats                                 the same counts as /elite/metrics (open)
  GET  /metrics                                 the service's request metrics, Prometheus text (open)

When an API key is set, every route except /healthz and /-/* needs the plan's auth header
(``Authorization: Bearer <key>``); the key is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from canary_guard.plan import Endpoint, Plan

from .faults import MODES, Fault, FaultError, FaultTable
from .latency import ServiceTime
from .metrics import ServiceMetrics
from .responses import Bodies, add_pii, error_body, feature_title, null_field, timestamp

log = logging.getLogger("sandbox")

VERSION = "2.4.1-sandbox"
HUGE_CHUNK = 64 * 1024
HANG_POLL_S = 0.2


@dataclass
class EndpointStats:
    request_count: int = 0
    error_count: int = 0
    latency_ms_total: float = 0.0
    answered: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # "200", "503", "reset", "hang"

    def record(self, outcome: str, latency_ms: float | None) -> None:
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
        if not outcome.isdigit() or int(outcome) >= 400:
            self.error_count += 1
        if latency_ms is not None:
            self.answered += 1
            self.latency_ms_total += latency_ms

    def to_json(self) -> dict[str, Any]:
        n = self.request_count
        return {
            "request_count": n,
            "error_count": self.error_count,
            "avg_latency_ms": round(self.latency_ms_total / self.answered, 3) if self.answered else None,
            "success_rate": round((n - self.error_count) / n, 6) if n else None,
            "responses": dict(sorted(self.statuses.items())),
        }


class Sandbox:
    """The state of one simulated service: features, faults, counters."""

    def __init__(self, plan: Plan, api_key: str | None = None, seed: int | None = None,
                 latency_ms: float = 0.0, access_log: bool = True, latency_profile: str = "reference",
                 slowdown: float = 1.0, cores: int = 0):
        self.plan = plan
        self.api_key = api_key or None
        self.latency_ms = latency_ms
        self.access_log = access_log
        self.jitter = random.Random(None if seed is None else seed + 2)
        self.service_time = ServiceTime(latency_profile, slowdown=slowdown, cores=cores,
                                        rng=random.Random(None if seed is None else seed + 3))
        self.started = time.time()
        self.features: dict[str, bool] = {f: True for f in plan.features()}
        self.faults = FaultTable({e.name: list(e.required_fields) for e in plan.endpoints}, seed)
        self.bodies = Bodies(random.Random(None if seed is None else seed + 1))
        self.stats: dict[str, EndpointStats] = {e.name: EndpointStats() for e in plan.endpoints}
        # (method, path) -> the endpoint label of the service's own metrics: the plan's endpoint
        # names (as the service calls them, when the traffic section maps them) and its routes
        traffic = plan.traffic
        self.metric_routes: dict[tuple[str, str], str] = {
            ("GET", "/elite/system-status"): "system_status", ("GET", "/elite/metrics"): "elite_metrics"}
        for e in reversed(plan.endpoints):  # the first endpoint of a shared route answers it
            label = traffic.service_endpoint(e.name) if traffic else e.name
            self.metric_routes[(e.method, e.path.split("?", 1)[0])] = label
        self.service_metrics = ServiceMetrics(list(dict.fromkeys(self.metric_routes.values())),
                                              VERSION)
        self.stopping = asyncio.Event()
        auth = plan.auth
        self.auth_header = auth.header
        expected = f"{auth.scheme} {self.api_key}" if auth.scheme else (self.api_key or "")
        self.expected_auth = expected.encode()

    def authorized(self, request: web.Request) -> bool:
        if not self.api_key:
            return True
        got = request.headers.get(self.auth_header, "").encode()
        return hmac.compare_digest(got, self.expected_auth)

    def metrics(self) -> dict[str, Any]:
        endpoints = {name: s.to_json() for name, s in self.stats.items()}
        total = sum(s.request_count for s in self.stats.values())
        errors = sum(s.error_count for s in self.stats.values())
        return {
            "service": self.plan.service,
            "endpoints": endpoints,
            "total_requests": total,
            "total_errors": errors,
            "overall_success_rate": round((total - errors) / total, 6) if total else None,
            "active_faults": len(self.faults.faults),
            "uptime_seconds": round(time.time() - self.started, 3),
            "timestamp": timestamp(),
        }


SANDBOX: web.AppKey[Sandbox] = web.AppKey("sandbox", Sandbox)
# per-request facts for the access log and /elite/metrics
ENDPOINT: web.RequestKey[str] = web.RequestKey("endpoint", str)
FAULT: web.RequestKey[str] = web.RequestKey("fault", str)
OUTCOME: web.RequestKey[str] = web.RequestKey("outcome", str)
FEATURE_OFF: web.RequestKey[bool] = web.RequestKey("feature_off", bool)  # a 503 "not enabled"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error_body(status, detail), status, headers)


async def read_json(request: web.Request, *, required: bool) -> tuple[Any, web.Response | None]:
    """The request's JSON body, or a 400 that says what is wrong with it."""
    raw = await request.read()
    if not raw.strip():
        if required:
            return None, error_response(400, "request body: a JSON object is required")
        return None, None
    try:
        return json.loads(raw), None
    except (ValueError, UnicodeDecodeError) as err:
        return None, error_response(400, f"request body: malformed JSON ({err})")


# -- middleware: auth, JSON errors, access log ---------------------------------------------

def _open_route(path: str) -> bool:
    return path in ("/healthz", "/metrics") or path.startswith("/-/")


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    started = time.perf_counter()
    status: int | str = "-"
    counted = sandbox.metric_routes.get((request.method, request.path))
    if counted:
        sandbox.service_metrics.started(counted)
    resp: web.StreamResponse
    try:
        if not _open_route(request.path) and not sandbox.authorized(request):
            resp = error_response(
                401, "missing or invalid API key: send Authorization: Bearer <API_KEY>",
                {"WWW-Authenticate": 'Bearer realm="recoveryos"'},
            )
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                resp = error_response(exc.status, _http_detail(exc, request), _allow(exc))
        status = request.get(OUTCOME, resp.status)
        return resp
    except asyncio.CancelledError:
        status = request.get(OUTCOME, "cancelled")
        raise
    finally:
        if counted:  # every request, the probes' too, as the real service counts them
            sandbox.service_metrics.finished(counted, 500 if status == "-" else status,
                                             time.perf_counter() - started,
                                             request.get(FEATURE_OFF, False))
        if sandbox.access_log:  # never bodies or headers: the API key must not reach a log
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "endpoint": request.get(ENDPOINT, "-"),
                    "fault": request.get(FAULT, "-"),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


def _http_detail(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"Not found: {request.path}"
    if exc.status == 405:
        return f"Method {request.method} not allowed on {request.path}"
    return exc.reason


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow") if exc.headers else None
    return {"Allow": allow} if allow else None


# -- the plan's endpoints ---------------------------------------------------------------------

def endpoint_handler(ep: Endpoint) -> Handler:
    expects_object = isinstance(ep.body, dict)
    needed = list(ep.body) if expects_object else []
    takes_body = ep.method in ("POST", "PUT", "PATCH")

    async def handle(request: web.Request) -> web.StreamResponse:
        sandbox = request.app[SANDBOX]
        stats = sandbox.stats[ep.name]
        stats.request_count += 1
        request[ENDPOINT] = ep.name
        started = time.perf_counter()
        try:
            resp = await _serve(sandbox, ep, request, expects_object, needed, takes_body)
        except asyncio.CancelledError:
            stats.record(request.get(OUTCOME, "cancelled"), None)
            raise
        outcome = request.get(OUTCOME)
        if outcome:  # reset / hang / client gone: no answer to time
            stats.record(outcome, None)
        else:
            stats.record(str(resp.status), (time.perf_counter() - started) * 1000)
        return resp

    handle.__name__ = f"endpoint_{ep.name}"
    return handle


async def _serve(sandbox: Sandbox, ep: Endpoint, request: web.Request, expects_object: bool,
                 needed: list[str], takes_body: bool) -> web.StreamResponse:
    if ep.feature and not sandbox.features.get(ep.feature, True):
        request[FEATURE_OFF] = True
        return error_response(503, f"{feature_title(ep.feature)} not enabled")
    body = None
    if takes_body:
        body, bad = await read_json(request, required=expects_object)
        if bad is not None:
            return bad
        if expects_object:
            if not isinstance(body, dict):
                return error_response(400, "request body: must be a JSON object")
            missing = [k for k in needed if k not in body]
            if missing:
                return error_response(400, f"request body: missing field(s) {', '.join(missing)}")
    await sandbox.service_time.work(ep.name)  # the endpoint's own latency profile
    if sandbox.latency_ms:  # extra think time, jittered +-50%
        await asyncio.sleep(sandbox.latency_ms * sandbox.jitter.uniform(0.5, 1.5) / 1000)
    fault = sandbox.faults.pick(ep.name)
    if fault is None:
        return json_response(sandbox.bodies.build(ep.name, ep.required_fields, body))
    request[FAULT] = fault.mode
    if fault.latency_ms and fault.mode != "hang":
        await asyncio.sleep(fault.latency_ms / 1000)
    return await _apply(sandbox, ep, request, fault, body)


async def _apply(sandbox: Sandbox, ep: Endpoint, request: web.Request, fault: Fault,
                 body: Any) -> web.StreamResponse:
    mode = fault.mode
    if mode == "error":
        code = fault.status_code
        return error_response(code, "Internal server error" if code == 500 else f"Injected error {code}")
    if mode == "rate_limited":
        limit = sandbox.plan.rate_limits.per_endpoint_per_minute
        detail = f"Rate limit exceeded: {limit} requests per minute per endpoint" if limit else (
            "Rate limit exceeded")
        return error_response(429, detail, {"Retry-After": str(fault.retry_after)})
    if mode == "null":
        return json_response(None)
    if mode == "invalid_json":
        return web.Response(
            text='{"result": {"status": "ok", "items": [1, 2,', content_type="application/json"
        )
    if mode == "reset":
        _reset(request)
        request[OUTCOME] = "reset"
        return web.Response(status=204)  # never sent: the transport is gone
    if mode == "hang":
        return await _hang(sandbox, request)
    if mode == "huge":
        return await _huge(request, fault.size_bytes)
    good = sandbox.bodies.build(ep.name, ep.required_fields, body)
    if mode == "null_field":
        null_field(good, fault.field, ep.required_fields)
    elif mode == "pii":
        add_pii(good, fault.kind)
    return json_response(good)  # slow, null_field, pii


def _reset(request: web.Request) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing backend would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def _hang(sandbox: Sandbox, request: web.Request) -> web.StreamResponse:
    """Answer nothing until the client hangs up (or the sandbox stops)."""
    request[OUTCOME] = "hang"
    while not sandbox.stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            break
        try:
            await asyncio.wait_for(sandbox.stopping.wait(), HANG_POLL_S)
        except TimeoutError:
            pass
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=204)  # never sent


async def _huge(request: web.Request, size: int) -> web.StreamResponse:
    """A valid JSON object of ``size`` bytes, streamed chunked (no Content-Length up front)."""
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    head = b'{"result": {"status": "ok"}, "timestamp": "' + timestamp().encode() + b'", "payload": "'
    tail = b'"}'
    pad = max(0, size - len(head) - len(tail))
    try:
        await resp.prepare(request)
        await resp.write(head)
        chunk = b"x" * HUGE_CHUNK
        while pad > 0:
            n = min(pad, HUGE_CHUNK)
            await resp.write(chunk[:n])
            pad -= n
        await resp.write(tail)
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        request[OUTCOME] = "client_closed"  # the prober stopped reading: what it should do
    return resp


# -- admin routes -----------------------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    return json_response({
        "status": "ok",
        "service": sandbox.plan.service,
        "version": VERSION,
        "uptime_seconds": round(time.time() - sandbox.started, 3),
        "timestamp": timestamp(),
    })


async def system_status(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    features = {
        name: {"enabled": on, "rollout_percentage": 100 if on else 0, "display_name": feature_title(name)}
        for name, on in sandbox.features.items()
    }
    disabled = [n for n, on in sandbox.features.items() if not on]
    return json_response({
        "status": "degraded" if disabled else "operational",
        "service": sandbox.plan.service,
        "version": VERSION,
        "features": features,
        "enabled_features": sum(sandbox.features.values()),
        "total_features": len(features),
        "endpoints": len(sandbox.plan.endpoints),
        "uptime_seconds": round(time.time() - sandbox.started, 3),
        "timestamp": timestamp(),
    })


async def elite_metrics(request: web.Request) -> web.Response:
    return json_response(request.app[SANDBOX].metrics())


def _feature_list(sandbox: Sandbox, body: Any, allow_all: bool) -> tuple[list[str], web.Response | None]:
    if not isinstance(body, dict) or "features" not in body:
        return [], error_response(400, 'request body: expected {"features": [FEATURE, ...]}')
    features = body["features"]
    if allow_all and (features == "all" or features == []):
        return list(sandbox.features), None
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        return [], error_response(400, "features: must be a non-empty list of feature names")
    unknown = [f for f in features if f not in sandbox.features]
    if unknown:
        known = ", ".join(sandbox.features) or "none"
        return [], error_response(400, f"features: unknown feature(s) {', '.join(unknown)} (known: {known})")
    return list(dict.fromkeys(features)), None


async def _set_features(request: web.Request, enabled: bool) -> web.Response:
    sandbox = request.app[SANDBOX]
    body, bad = await read_json(request, required=True)
    if bad is not None:
        return bad
    names, bad = _feature_list(sandbox, body, allow_all=enabled)
    if bad is not None:
        return bad
    for name in names:
        sandbox.features[name] = enabled
    verb = "enabled" if enabled else "disabled"
    log.info(f"features {verb}", extra={"features": ",".join(names)})
    return json_response({
        "status": "success",
        verb: names,
        "message": f"{len(names)} feature(s) {verb}",
        "features": {n: {"enabled": on} for n, on in sandbox.features.items()},
        "timestamp": timestamp(),
    })


async def disable_features(request: web.Request) -> web.Response:
    return await _set_features(request, False)


async def enable_features(request: web.Request) -> web.Response:
    return await _set_features(request, True)


async def add_fault(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    body, bad = await read_json(request, required=True)
    if bad is not None:
        return bad
    try:
        fault = sandbox.faults.add(body)
    except FaultError as err:
        return error_response(400, str(err))
    shown = {k: v for k, v in fault.to_json().items() if k not in ("created", "applied")}
    log.info("fault added", extra=shown)
    return json_response(fault.to_json(), status=201)


async def list_faults(request: web.Request) -> web.Response:
    faults = request.app[SANDBOX].faults.faults
    return json_response({"faults": [f.to_json() for f in faults], "modes": MODES, "timestamp": timestamp()})


async def clear_faults(request: web.Request) -> web.Response:
    n = request.app[SANDBOX].faults.clear()
    log.info("faults cleared", extra={"cleared": n})
    return json_response({"cleared": n, "timestamp": timestamp()})


async def delete_fault(request: web.Request) -> web.Response:
    fault_id = request.match_info["fault_id"]
    fault = request.app[SANDBOX].faults.remove(fault_id)
    if fault is None:
        return error_response(404, f"no active fault with id {fault_id!r}")
    log.info("fault removed", extra={"id": fault_id})
    return json_response({"cleared": 1, "fault": fault.to_json(), "timestamp": timestamp()})


async def stats(request: web.Request) -> web.Response:
    return json_response(request.app[SANDBOX].metrics())


async def prometheus_metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[SANDBOX].service_metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


# -- the application ------------------------------------------------------------------------------

def create_app(plan: Plan, api_key: str | None = None, seed: int | None = None, *,
               latency_ms: float = 0.0, faults: list[dict[str, Any]] | None = None,
               access_log: bool = True, latency_profile: str = "reference", slowdown: float = 1.0,
               cores: int = 0) -> web.Application:
    """The sandbox serving ``plan``'s endpoints.

    ``api_key``: when non-empty, every route except /healthz and /-/* requires the plan's
    auth header with it. ``seed``: makes the random draw of faults with rate < 1 (and the
    random parts of bodies and latencies) repeatable. ``latency_profile``: ``reference`` (each
    endpoint as slow as the real service, see ``latency``) or ``none``; ``slowdown`` (>= 1)
    stretches those times, as a busy machine would; ``cores`` (0: unbounded) answers at most
    that many requests at once. ``latency_ms``: extra think time of every endpoint answer
    (jittered +-50%). ``faults``: fault specs (as POSTed to /-/faults) active from the start;
    a bad one raises ``FaultError``. ``access_log``: one logfmt line per request. A bad
    latency setting raises ``ValueError``.
    """
    app = web.Application(middlewares=[middleware], client_max_size=8 << 20)
    sandbox = Sandbox(plan, api_key=api_key, seed=seed, latency_ms=latency_ms, access_log=access_log,
                      latency_profile=latency_profile, slowdown=slowdown, cores=cores)
    for spec in faults or []:
        sandbox.faults.add(spec)
    app[SANDBOX] = sandbox

    taken: dict[tuple[str, str], str] = {}
    for ep in plan.endpoints:
        path = ep.path.split("?", 1)[0]
        key = (ep.method, path)
        if key in taken:
            log.warning("endpoint shares a route; the first one answers",
                        extra={"endpoint": ep.name, "route": f"{ep.method} {path}", "first": taken[key]})
            continue
        taken[key] = ep.name
        app.router.add_route(ep.method, path, endpoint_handler(ep))

    builtins = [
        ("GET", "/healthz", healthz),
        ("GET", "/elite/system-status", system_status),
        ("GET", "/elite/metrics", elite_metrics),
        ("POST", "/elite/config/disable", disable_features),
        ("POST", "/elite/config/enable", enable_features),
        ("GET", "/-/faults", list_faults),
        ("POST", "/-/faults", add_fault),
        ("DELETE", "/-/faults", clear_faults),
        ("DELETE", "/-/faults/{fault_id}", delete_fault),
        ("GET", "/-/stats", stats),
        ("GET", "/metrics", prometheus_metrics),
    ]
    for method, path, handler in builtins:
        if (method, path) in taken:
            log.warning("plan endpoint replaces a built-in route",
                        extra={"route": f"{method} {path}", "endpoint": taken[(method, path)]})
            continue
        app.router.add_route(method, path, handler)

    async def on_shutdown(app: web.Application) -> None:
        app[SANDBOX].stopping.set()  # releases hung requests so shutdown is prompt

    app.on_shutdown.append(on_shutdown)
    return app
