"""``/api/*``: the audit trail as JSON; ``/healthz`` and ``/metrics`` for machines."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from canary_guard.durations import parse_duration

from .context import current, json_error
from .review import DecisionError, Stale, decide, needing
from .store import NEEDS_REVIEW, QUEUED, RUN_STATUSES

bp = Blueprint("api", __name__, url_prefix="/api")
ops = Blueprint("ops", __name__)


@bp.get("/actions")
def actions() -> Response:
    s, args = current(), request.args
    try:
        status = args.get("status") or None
        if status and status not in RUN_STATUSES:
            raise ValueError(f"status: must be one of {', '.join(RUN_STATUSES)}")
        since = parse_since(args["since"]) if args.get("since") else None
        limit = bounded_int(args.get("limit", "100"), "limit", 1, 10_000)
        incident = bounded_int(args["incident"], "incident", 1, 2**62) if args.get("incident") else None
    except ValueError as err:
        return json_error(400, "bad_query", str(err))
    runs = s.store.actions(action=args.get("action") or None, status=status,
                           endpoint=args.get("endpoint") or None, since=since,
                           incident=incident, limit=limit)
    return jsonify({"count": len(runs), "dry_run": s.config.dry_run, "actions": runs})


@bp.get("/incidents")
def incidents() -> Response:
    try:
        limit = bounded_int(request.args.get("limit", "100"), "limit", 1, 10_000)
    except ValueError as err:
        return json_error(400, "bad_query", str(err))
    # merged=1: also the firings recorded against an earlier incident of the same alert
    merged = request.args.get("merged", "") in ("1", "true")
    return jsonify({"incidents": current().store.incidents(limit, merged=merged)})


@bp.get("/review")
def review() -> Response:
    """Incidents that need a person: failed runs with no decision since, pages awaiting review."""
    s = current()
    need = needing(s.store, s.plan, s.actions.escalation)
    out: list[dict[str, Any]] = []
    for iid, n in need.items():
        inc = s.store.incident(iid)
        if inc:
            inc.pop("labels", None)
            out.append({"incident": inc, "why": n.why, "failed_runs": n.runs,
                        "decisions": s.store.decisions(iid)})
    out.sort(key=lambda x: (x["why"] != "failed", -x["incident"]["id"]))
    return jsonify({"count": len(out), "incidents": out})


@bp.get("/decisions")
def decisions() -> Response:
    try:
        limit = bounded_int(request.args.get("limit", "100"), "limit", 1, 10_000)
        incident = bounded_int(request.args["incident"], "incident", 1, 2**62) \
            if request.args.get("incident") else None
    except ValueError as err:
        return json_error(400, "bad_query", str(err))
    return jsonify({"decisions": current().store.decisions(incident, limit)})


@bp.post("/incidents/<int:incident_id>/decision")
def decision(incident_id: int) -> Response:
    """Chat-ops: ``{"decision": "rollback"|"disable_feature"|"dismiss", "note": "...", "after": N}``."""
    s, who = current(), g.who
    if who.via == "session":
        # a cookie alone could be a forged cross-site request: scripts send their own credential
        return json_error(403, "credential_required", "POST /api/* takes 'Authorization: Bearer "
                          "<operator token>' or basic auth, not the page's session cookie")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return json_error(400, "bad_request", 'body: a JSON object such as {"decision": "dismiss", '
                          '"note": "why"}')
    after = body.get("after")
    if after is not None and (not isinstance(after, int) or after < 0):
        return json_error(400, "bad_request", "after: the id of the newest decision you saw (0: none)")
    note = body.get("note", "")
    if not isinstance(note, str):
        return json_error(400, "bad_request", "note: must be a string")
    try:
        d = decide(s.store, s.plan, s.actions.priorities(), incident_id, str(body.get("decision", "")),
                   who, note, "api", after, s.config.dry_run)
    except DecisionError as err:
        return json_error(err.status, err.code, err.detail)
    except Stale as err:
        resp = jsonify({"error": "already_decided", "detail": str(err), "latest": err.latest})
        resp.status_code = 409
        return resp
    s.worker.wake()
    s.escalator.wake()
    s.decisions_total.labels(d["decision"]).inc()
    resp = jsonify({"status": "recorded", "decision": d})
    resp.status_code = 201
    return resp


@ops.get("/healthz")
def healthz() -> Response:
    """200 while the worker runs; ``degraded`` (still 200: a restart would not fix it) while a
    failed action waits for a person; 503 when the worker thread is dead."""
    s = current()
    counts = s.store.counts()
    worker_ok = s.worker.alive() or not s.config.start_worker
    failed = s.store.failed_runs()
    status = "worker stopped" if not worker_ok else ("degraded" if failed else "ok")
    resp = jsonify({
        "status": status,
        "open_escalations": len(failed),
        "failed_runs": [{"run": f["run"], "incident": f["incident"], "action": f["action"],
                         "status": f["status"]} for f in failed[:20]],
        "alertmanagers": {"configured": len(s.escalator.urls), "errors": s.escalator.last_error},
        "dry_run": s.config.dry_run,
        "auth": "token" if s.auth.enabled else "disabled (--insecure-no-auth)",
        "replica": s.store.owner,  # this process's id: the owner of the runs it has claimed
        "queue_depth": counts.get("runs_" + QUEUED, 0),
        "needs_review": counts.get("runs_" + NEEDS_REVIEW, 0),
        "notifications": counts["notifications"],
        "incidents": counts["incidents"],
    })
    resp.status_code = 200 if worker_ok else 503
    return resp


@ops.get("/metrics")
def metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(current().metrics.render(), content_type=CONTENT_TYPE_LATEST)


_EPOCH_RE = re.compile(r"^\d+(\.\d+)?$")


def parse_since(text: str, now: float | None = None) -> float:
    """``since=``: unix seconds, an RFC 3339 time, or a duration ago ("10m", "1h")."""
    now = time.time() if now is None else now
    if _EPOCH_RE.match(text):
        return float(text)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return now - parse_duration(text)
    except ValueError:
        raise ValueError(f"since: {text[:40]!r} is neither unix seconds, an RFC 3339 time nor "
                         "a duration such as 10m") from None


def bounded_int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: must be a whole number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name}: must be between {lo} and {hi}")
    return value
