"""``/``: the page for the on-call person, and who may see it.

Incidents that need a decision come first (an action failed, partly failed, was refused or was
cut off; or a page that waits for manual review), each with what happened and, for operators,
three decisions: roll back now, disable the endpoint's feature, dismiss with a note.

Every page and ``/api/*`` needs a credential (``require_reader``, run before every request
except ``POST /alerts``, ``/healthz``, ``/metrics`` and the login page): a session from the
login form, an operator's or viewer's API token, basic auth, or Alertmanager's token (reads
only). Forms carry a per-session CSRF token; ``POST /api/*`` takes header credentials only,
never the session cookie, so no other site can make a browser decide.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from .auth import Principal, csrf_token
from .context import current, json_error
from .review import DecisionError, Stale, decide, needing
from .store import NEEDS_REVIEW

bp = Blueprint("views", __name__, template_folder="templates")

# Paths that answer without a credential: Alertmanager's own (it authenticates itself), the
# kubelet's and Prometheus's, and the login form.
OPEN_PATHS = ("/alerts", "/healthz", "/metrics", "/login")
SESSION_SECONDS = 12 * 3600


def principal() -> Principal | None:
    """Who sent this request, from the Authorization header or the session; None: nobody."""
    s = current()
    header = request.headers.get("Authorization")
    if header:
        return s.access.from_header(header)
    user = session.get("user")
    if user and session.get("until", 0) > time.time():
        return Principal(user, session.get("role", "viewer"), "session")
    return s.access.anonymous()


@bp.before_app_request
def require_reader() -> Response | None:
    if request.path in OPEN_PATHS:
        return None
    who = principal()
    if who is None:
        if request.path.startswith("/api/"):
            return json_error(401, "unauthorized", "a credential is required: 'Authorization: Bearer "
                              "<token>' (an operator's or viewer's token) or basic auth",
                              **{"WWW-Authenticate": 'Bearer realm="canary-guard"'})
        # No WWW-Authenticate here: the browser shows the login form instead of its own dialog.
        return make_response(login_page(), 401)
    g.who = who
    return None


def login_page(error: str | None = None) -> str:
    session.setdefault("csrf", csrf_token())
    return render_template("login.html", plan=current().plan, error=error,
                           users=current().access.users.configured)


def csrf_ok() -> bool:
    want = session.get("csrf")
    got = request.form.get("csrf", "")
    return bool(want) and hmac.compare_digest(str(want), got)


@bp.get("/login")
def login_form() -> str:
    return login_page()


@bp.post("/login")
def login() -> ResponseReturnValue:
    if not csrf_ok():
        return login_page("The form expired: try again."), 400
    who = current().access.users.password(request.form.get("username", "")[:64],
                                          request.form.get("password", "")[:1024])
    if who is None:
        time.sleep(0.2)  # a guess costs a little time
        return login_page("Unknown user or wrong password."), 401
    session.clear()
    session.update({"user": who.name, "role": who.role, "until": time.time() + SESSION_SECONDS,
                    "csrf": csrf_token()})
    return redirect(url_for("views.index"), 303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    if csrf_ok():
        session.clear()
    return redirect(url_for("views.login_form"), 303)


@bp.post("/incidents/<int:incident_id>/decide")
def decide_form(incident_id: int) -> ResponseReturnValue:
    s = current()
    if g.who.via in ("token", "password", "alertmanager") or not csrf_ok():
        # forms are for the logged-in page; scripts use POST /api/incidents/<id>/decision
        return json_error(403, "csrf", "the form's CSRF token is missing or wrong: reload the page")
    after = request.form.get("after", "")
    try:
        d = decide(s.store, s.plan, s.actions.priorities(), incident_id, request.form.get("decision", ""),
                   g.who, request.form.get("note", ""), "page", int(after) if after.isdigit() else None,
                   s.config.dry_run)
    except DecisionError as err:
        session["flash"] = f"Not done: {err.detail}"
    except Stale as err:
        session["flash"] = (f"Not done: {err.latest['operator']} already decided "
                            f"{err.latest['decision']} on incident {incident_id}; the page is reloaded.")
    else:
        s.worker.wake()
        s.escalator.wake()
        s.decisions_total.labels(d["decision"]).inc()
        session["flash"] = (f"Incident {incident_id}: {d['decision']} recorded"
                            + (f", run {d['run']} queued" if d["run"] else "") + f" (by {d['operator']}).")
    return redirect(url_for("views.index") + f"#incident-{incident_id}", 303)


@bp.get("/")
def index() -> str:
    s = current()
    incidents = s.store.incidents(200)
    runs = s.store.actions(limit=1000)
    by_incident: dict[Any, list[dict[str, Any]]] = {}
    for run in runs:
        key = run["incident"]["id"] if run["incident"] else None
        by_incident.setdefault(key, []).append(run)
    for lst in by_incident.values():
        lst.reverse()  # oldest first, as it happened
    need = needing(s.store, s.plan, s.actions.escalation)
    decisions: dict[int, list[dict[str, Any]]] = {}
    for d in s.store.decisions(limit=1000):
        decisions.setdefault(d["incident"], []).append(d)
    # incidents that need a decision first (failures before reviews), then the rest, newest first
    known = {i["id"] for i in incidents}
    for iid in need:
        if iid not in known:
            inc = s.store.incident(iid)
            if inc:
                incidents.append({**inc, "deliveries": "-", "last_seen": None})
    incidents.sort(key=lambda i: (i["id"] not in need,
                                  need[i["id"]].why != "failed" if i["id"] in need else False, -i["id"]))
    review = [r for r in runs if r["status"] == NEEDS_REVIEW]
    failed = [n for n in need.values() if n.why == "failed"]
    flash = session.pop("flash", None)
    session.setdefault("csrf", csrf_token())
    return render_template(
        "index.html", plan=s.plan, incidents=incidents[:200], runs=by_incident, review=review,
        counts=s.store.counts(), config=s.config, escalation=s.actions.escalation, need=need,
        failed=failed, decisions=decisions, who=g.who, csrf=session["csrf"], flash=flash,
        alertmanagers=len(s.escalator.urls),
        refresh=not need,  # a page with decision forms does not reload under a person's typing
    )


@bp.app_template_filter("ts")
def ts(value: float | None) -> str:
    if value is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(value))
