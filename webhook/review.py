"""Manual review: which incidents need a person, and what each decision runs.

The page (``views.py``) and the JSON API (``api.py``) both go through :func:`decide`, so a
decision made in a browser and one made by a chat-ops bot are the same row in the audit trail.

- ``rollback``: the plan's ``kubectl_rollback`` action (the one the incident's own action uses,
  else the plan's first); the rollback cooldown still applies, so a second undo never
  re-deploys the bad revision.
- ``disable_feature``: the plan's ``disable_feature`` action that disables the alert's endpoint's
  feature (``features: alert``); refused when the incident names no plan endpoint with a feature.
- ``dismiss``: nothing runs; a note saying why is required.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from canary_guard.plan import DisableFeature, KubectlRollback, Page, Plan, Sequence

from .auth import Principal
from .store.review import DECISIONS, Stale

NOTE_LIMIT = 2000

__all__ = ["DECISIONS", "DecisionError", "Stale", "decide", "decision_action", "needing"]


class DecisionError(Exception):
    def __init__(self, status: int, code: str, detail: str):
        self.status, self.code, self.detail = status, code, detail
        super().__init__(detail)


def _steps(plan: Plan, name: str | None) -> list[str]:
    spec = plan.actions.get(name or "")
    if isinstance(spec, Sequence):
        return list(spec.steps)
    return [name] if spec is not None and name else []


def decision_action(plan: Plan, incident: dict[str, Any], decision: str) -> str | None:
    """The plan action a decision runs for this incident (None: dismiss); DecisionError if none fits."""
    if decision == "dismiss":
        return None
    own = _steps(plan, incident.get("action"))
    if decision == "rollback":
        kinds = [n for n, a in plan.actions.items() if isinstance(a, KubectlRollback)]
        if not kinds:
            raise DecisionError(409, "no_rollback_action", "the plan has no kubectl_rollback action")
        return next((n for n in own if n in kinds), kinds[0])
    endpoint = plan.endpoint(incident.get("endpoint") or "")
    if endpoint is None or not endpoint.feature:
        raise DecisionError(409, "no_feature", "this incident names no plan endpoint with a feature "
                                               "to disable")
    per_alert = [n for n, a in plan.actions.items()
                 if isinstance(a, DisableFeature) and a.features == "alert"]
    if not per_alert:
        raise DecisionError(409, "no_disable_action", "the plan has no disable_feature action with "
                                                      "features: alert")
    return next((n for n in own if n in per_alert), per_alert[0])


def page_actions(plan: Plan, escalation: str) -> list[str]:
    """Actions that only page: their incidents wait for a person's review."""
    out = [n for n, a in plan.actions.items() if isinstance(a, Page)]
    return list(dict.fromkeys([*out, escalation]))


@dataclass
class Needing:
    incident: int
    why: str  # failed | review
    runs: list[dict[str, Any]]


def needing(store: Any, plan: Plan, escalation: str) -> dict[int, Needing]:
    """Incident id -> why it needs a person: a failed run not decided on since, or a page to review."""
    out: dict[int, Needing] = {}
    for run in store.failed_runs():
        out.setdefault(run["incident"], Needing(run["incident"], "failed", [])).runs.append(run)
    for iid in store.awaiting_review(page_actions(plan, escalation)):
        out.setdefault(iid, Needing(iid, "review", []))
    return out


def decide(store: Any, plan: Plan, priorities: dict[str, int], incident_id: int, decision: str,
           who: Principal, note: str, via: str, after: int | None, dry_run: bool) -> dict[str, Any]:
    """Validate and record a decision; queue its action. Raises DecisionError or Stale."""
    if not who.may_decide:
        raise DecisionError(403, "forbidden", f"{who.name} may read but not decide (role {who.role})")
    if decision not in DECISIONS:
        raise DecisionError(400, "bad_decision", f"decision: must be one of {', '.join(DECISIONS)}")
    note = (note or "").strip()
    if len(note) > NOTE_LIMIT:
        raise DecisionError(400, "bad_note", f"note: at most {NOTE_LIMIT} characters")
    if decision == "dismiss" and not note:
        raise DecisionError(400, "note_required", "note: say why the incident is dismissed")
    incident = store.incident(incident_id)
    if incident is None:
        raise DecisionError(404, "no_such_incident", f"no incident {incident_id}")
    action = decision_action(plan, incident, decision)
    return store.decide(incident_id, decision, who.name, note, via, action=action,
                        priority=priorities.get(action or "", 1), dry_run=dry_run, after=after)
