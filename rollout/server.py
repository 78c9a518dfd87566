"""The rollout's control port: status, audit trail, metrics, and pause/resume/abort/approve.

    GET  /status            the state as JSON          POST /pause    {"reason": "..."}
    GET  /audit?limit=N     the last N audit entries   POST /resume
    GET  /metrics           Prometheus metrics         POST /abort    {"reason": "..."}
    GET  /healthz                                      POST /approve  {"phase": N}

A POST changes traffic, so it needs the bearer token when one is configured; the port listens
on loopback unless told otherwise, and refuses other addresses without a token.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from canary_guard import contract as c

from .engine import Rollout

MAX_BODY = 64 * 1024


class RolloutCollector:
    """Reads the rollout's state at scrape time, so metrics and state never disagree."""

    def __init__(self, rollout: Rollout):
        self.rollout = rollout

    def collect(self) -> Iterator[Metric]:
        r = self.rollout
        doc = r.snapshot()
        phase = GaugeMetricFamily(c.ROLLOUT_PHASE, "The current phase's number (1-based), labelled with "
                                  "its name", labels=["phase"])
        phase.add_metric([doc["phase_name"]], doc["phase_number"])
        yield phase
        yield GaugeMetricFamily(c.ROLLOUT_PHASES, "How many phases the plan has", value=doc["phases"])
        weight = doc["effective"] if doc["effective"] is not None else doc["weight"]
        yield GaugeMetricFamily(c.ROLLOUT_WEIGHT, "The canary's share of traffic as applied, 0-1 "
                                "(NaN: none yet)", value=float("nan") if weight is None else weight / 100)
        status = GaugeMetricFamily(c.ROLLOUT_STATUS, "1 for the rollout's current status", labels=["status"])
        for s in c.ROLLOUT_STATUSES:
            status.add_metric([s], 1.0 if doc["status"] == s else 0.0)
        yield status
        last = doc["last_decision"] or {}
        decision = GaugeMetricFamily(c.ROLLOUT_DECISION, "1 for the gate's last decision",
                                     labels=["decision"])
        for d in c.DECISIONS:
            decision.add_metric([d], 1.0 if last.get("decision") == d else 0.0)
        yield decision
        yield GaugeMetricFamily(c.ROLLOUT_DECISION_TIME, "When the gate last decided (0: never)",
                                value=last.get("at") or 0.0)
        yield GaugeMetricFamily(c.ROLLOUT_PHASE_START, "When the current phase's weight was applied "
                                "(0: not yet)", value=doc["phase_started"] or 0.0)
        yield GaugeMetricFamily(c.ROLLOUT_PHASE_END, "When the current phase's duration is over (0: no end)",
                                value=doc["phase_end"] or 0.0)
        runs = CounterMetricFamily(c.ROLLOUT_GATE_RUNS, "Gate runs by decision since this process started",
                                   labels=["decision"])
        for d in (*c.DECISIONS, "error"):
            runs.add_metric([d], r.gate_runs.get(d, 0))
        yield runs
        changes = CounterMetricFamily(c.ROLLOUT_WEIGHT_CHANGES, "Weight changes by outcome since this "
                                      "process started", labels=["outcome"])
        for o in ("ok", "failed"):
            changes.add_metric([o], r.weight_changes.get(o, 0))
        yield changes


def _audit(rollout: Rollout, query: str) -> tuple[int, dict[str, Any]]:
    """``GET /audit?limit=N``: the newest N entries of the audit trail."""
    try:
        limit = int(parse_qs(query).get("limit", ["100"])[0])
        if not 1 <= limit <= 100_000:
            raise ValueError
    except ValueError:
        return 400, {"error": "limit: a whole number from 1 to 100000"}
    return 200, {"audit": rollout.store.audit_trail(limit)}


def _control(rollout: Rollout, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A ``POST`` to /pause, /resume, /abort or /approve: 200 done, 409 refused in this state."""
    reason = str(body.get("reason") or "")[:500]
    if path == "/pause":
        ok, msg = rollout.pause(reason)
    elif path == "/resume":
        ok, msg = rollout.resume()
    elif path == "/abort":
        ok, msg = rollout.abort(reason)
    elif path == "/approve":
        phase = body.get("phase")
        if phase is not None and (not isinstance(phase, int) or isinstance(phase, bool)):
            return 400, {"error": "phase: a phase number (1-based)"}
        ok, msg = rollout.approve(phase)
    else:
        return 404, {"error": f"no {path}"}
    return (200 if ok else 409), {"ok": ok, "message": msg, "status": rollout.snapshot()["status"]}


def make_server(rollout: Rollout, host: str, port: int, token: str | None) -> ThreadingHTTPServer:
    registry = CollectorRegistry()
    registry.register(RolloutCollector(rollout))

    class Handler(BaseHTTPRequestHandler):
        server_version = "canary-guard-rollout"

        def _send(self, code: int, obj: object, content_type: str = "application/json") -> None:
            data = obj if isinstance(obj, bytes) else (json.dumps(obj, indent=2) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path == "/healthz":
                self._send(200, {"status": "ok"})
            elif url.path == "/status":
                self._send(200, rollout.snapshot())
            elif url.path == "/audit":
                self._send(*_audit(rollout, url.query))
            elif url.path == "/metrics":
                self._send(200, generate_latest(registry), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._send(404, {"error": f"no {url.path}"})

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if token is not None:
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    self._send(401, {"error": "a bearer token is required (CANARY_GUARD_ROLLOUT_TOKEN)"})
                    return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, {"error": "body too large"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                if not isinstance(body, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                self._send(400, {"error": f"body: {err}"})
                return
            self._send(*_control(rollout, url.path, body))

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="rollout-control", daemon=True)
    thread.start()
    return thread
