"""``/``: the page for the on-call person (incidents, what was done, what needs review)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, render_template

from .context import current
from .store import NEEDS_REVIEW

bp = Blueprint("views", __name__, template_folder="templates")


@bp.get("/")
def index() -> str:
    s = current()
    incidents = s.store.incidents(50)
    runs = s.store.actions(limit=500)
    by_incident: dict[Any, list[dict[str, Any]]] = {}
    for run in runs:
        key = run["incident"]["id"] if run["incident"] else None
        by_incident.setdefault(key, []).append(run)
    for lst in by_incident.values():
        lst.reverse()  # oldest first, as it happened
    review = [r for r in runs if r["status"] == NEEDS_REVIEW]
    return render_template("index.html", plan=s.plan, incidents=incidents, runs=by_incident,
                           review=review, counts=s.store.counts(), config=s.config,
                           escalation=s.actions.escalation)


@bp.app_template_filter("ts")
def ts(value: float | None) -> str:
    if value is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(value))
