"""``canary-guard gate serve``: the gate over HTTP, for the rollout and for progressive-delivery
controllers. Every answer is the same decision as ``canary-guard gate`` (the same report).

    GET  /gate?phase=N[&since=T&at=T&track=&baseline=&window=]
         200 promote, 503 hold (with Retry-After), 409 rollback; the report as JSON
    POST /flagger/confirm-promotion[?phase=N]   200 only when the gate promotes: Flagger promotes
    POST /flagger/rollback[?phase=N]            200 only when the gate decides rollback: Flagger
                                                rolls back (any other answer: carry on)
    POST /flagger/check[?phase=N]               a "rollout" check: fails (409) only on rollback;
                                                a hold is not a failed check
    GET  /argo?phase=N                          200 with the report for Argo Rollouts' web metric
                                                provider: successCondition result.decision ==
                                                'promote', failureCondition result.decision ==
                                                'rollback'; a hold is inconclusive
    GET  /healthz

Flagger posts ``{"name", "namespace", "phase", "checksum", "type", "metadata"}``; the phase to
judge comes from the query string or ``metadata.phase``, by default the last phase with a
duration (the one before full traffic), judged against the time since the canary's first probe.
"Not enough data" is a hold: never a promotion, never a rollback. Prometheus unreachable: 502,
which every caller treats as "do not go on".
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider

from canary_guard.cli import plan_from_args

if TYPE_CHECKING:
    from canary_guard.plan import Plan

    from .evaluate import Report

HOLD_RETRY_AFTER = 60  # seconds, for GET /gate's 503
STATUS = {"promote": 200, "hold": 503, "rollback": 409}
log = logging.getLogger("canary_guard.gate.serve")


class BadRequest(ValueError):
    pass


def _phase(plan: Plan, source: Mapping[str, Any], default_phase: int | None) -> int:
    """The phase index a request asks for (a number, 1-based, or a name), else the default."""
    from .evaluate import phase_index

    phase = source.get("phase")
    if phase in (None, ""):
        if default_phase is None:
            raise BadRequest("phase: required (a phase number, 1-based, or name)")
        return default_phase
    try:
        return phase_index(plan, str(phase))
    except ValueError as err:
        raise BadRequest(f"phase: {err}") from None


def _field(source: Mapping[str, Any], name: str, parse: Callable[[str], float]) -> float | None:
    """An optional request field, parsed; a bad value is a 400 naming the field."""
    try:
        return parse(str(source[name])) if source.get(name) else None
    except ValueError as err:
        raise BadRequest(f"{name}: {err}") from None


def _flagger_payload() -> dict[str, Any]:
    """The canary, the hook type and the gate's query from Flagger's webhook body."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("body: Flagger's webhook payload (a JSON object) is required")
    for key in ("name", "namespace"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise BadRequest(f"body.{key}: required (Flagger's canary {key})")
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise BadRequest("body.metadata: must be a mapping of strings")
    source = {k: v for k, v in meta.items() if k in ("phase", "track", "baseline", "window")}
    source.update({k: v for k, v in request.args.items()})
    return {"canary": f"{body['namespace']}/{body['name']}", "type": body.get("type", ""),
            "source": source}


def create_app(plan: Plan, prometheus: str, timeout: float = 10.0) -> Flask:
    from canary_guard.durations import parse_duration

    from .cli import finite, judge, pick_tracks
    from .prom import Prometheus, PrometheusError, parse_time

    app = Flask("canary_guard.gate.serve")
    app.json = json_provider = DefaultJSONProvider(app)
    json_provider.sort_keys = False  # a report's fields in their order, not alphabetical
    last_timed = max((i for i, p in enumerate(plan.phases) if p.duration is not None), default=0)

    def decide(source: Mapping[str, Any], default_phase: int | None = None) -> Report:
        index = _phase(plan, source, default_phase)
        at = _field(source, "at", parse_time) or parse_time("now")
        since = _field(source, "since", parse_time)
        window = _field(source, "window", parse_duration)
        if window is not None and window <= 0:
            raise BadRequest("window: must be above 0")
        try:
            track, baseline = pick_tracks(plan, source.get("track") or None, source.get("baseline") or None)
        except ValueError as err:
            raise BadRequest(f"track/baseline: {err}") from None
        prom = Prometheus(prometheus, timeout=timeout)
        try:
            return judge(plan, prom, index, at, since, track, baseline, window)
        finally:
            prom.close()

    def report_json(report: Report) -> Any:
        return finite(report.to_dict())  # JSON has no Infinity

    @app.errorhandler(BadRequest)
    def bad_request(err: BadRequest) -> tuple[Response, int]:
        return jsonify({"error": str(err)}), 400

    @app.errorhandler(PrometheusError)
    def no_prometheus(err: PrometheusError) -> tuple[Response, int]:
        log.warning("prometheus", extra={"error": str(err)})
        return jsonify({"error": str(err), "decision": None}), 502

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "plan": plan.name})

    @app.get("/gate")
    def gate() -> Response:
        report = decide(request.args)
        resp = jsonify(report_json(report))
        resp.status_code = STATUS[report.decision]
        if report.decision == "hold":
            resp.headers["Retry-After"] = str(HOLD_RETRY_AFTER)
        return resp

    @app.get("/argo")
    def argo() -> Response:
        # Always 200 with the report, so that Argo evaluates its conditions on result.decision;
        # a 5xx would be a measurement error instead.
        return jsonify(report_json(decide(request.args)))

    # Flagger's hooks: which decisions let Flagger go on (promote, roll back, pass the check)
    hooks = {"confirm-promotion": ("promote",), "rollback": ("rollback",), "check": ("promote", "hold")}

    def flagger_hook(hook: str) -> Response:
        payload = _flagger_payload()
        report = decide(payload["source"], last_timed)
        go = report.decision in hooks[hook]
        log.info(f"flagger {hook}", extra={"canary": payload["canary"], "decision": report.decision,
                                            "go": go})
        resp = jsonify({"hook": hook, "go": go, "decision": report.decision, "reasons": report.reasons,
                        "report": report_json(report)})
        resp.status_code = 200 if go else (409 if report.decision == "rollback" else 412)
        return resp

    for hook in hooks:
        app.add_url_rule(f"/flagger/{hook}", f"flagger_{hook}", methods=["POST"],
                         view_func=lambda hook=hook: flagger_hook(hook))

    return app


def serve(args: argparse.Namespace) -> int:
    from waitress.server import create_server

    plan = plan_from_args(args)
    if not plan.phases:
        print("canary-guard gate serve: the plan has no phases", file=sys.stderr)
        return 1
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        print(f"canary-guard gate serve: --listen {args.listen!r}: expected HOST:PORT", file=sys.stderr)
        return 1
    app = create_app(plan, args.prometheus, timeout=args.timeout)
    try:
        server = create_server(app, host=host.strip("[]") or "127.0.0.1", port=int(port), threads=4,
                               ident="canary-guard-gate")
    except OSError as err:
        print(f"canary-guard gate serve: cannot listen on {args.listen}: {err.strerror}", file=sys.stderr)
        return 1
    log.info("serving the gate", extra={"listen": args.listen, "prometheus": args.prometheus,
                                        "phases": len(plan.phases)})
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
