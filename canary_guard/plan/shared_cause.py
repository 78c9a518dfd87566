"""What happens when the baseline fails too: the plan's ``shared_cause`` section.

A rollback trigger with a baseline rolls back only when the guarded track breaches and the
baseline does not. When both breach, the cause is shared (the service's dependencies, the
machine, the plan itself) and a rollback would not help: one alert per track and endpoint
(``alert``, ``CanarySharedCause`` by default) pages instead, through ``action``. That action
may tell people; it may never change the deployment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from .actions import DisableFeature, KubectlRollback, Sequence
from .base import ALERT_RE, Model, Name

if TYPE_CHECKING:
    from .model import Plan


class SharedCause(Model):
    alert: str = Field(default="CanarySharedCause", pattern=ALERT_RE)
    # a plan action that only tells people; None: the plan's first action of kind page
    action: Name | None = None
    severity: Literal["critical", "warning", "info", "page"] = "warning"


def changes_deployment(plan: Plan, name: str) -> bool:
    """Whether the action (or a step of it) rolls back or switches features off."""
    action = plan.actions.get(name)
    steps = [plan.actions.get(s) for s in action.steps] if isinstance(action, Sequence) else [action]
    return any(isinstance(s, KubectlRollback | DisableFeature) for s in steps)


def problems(plan: Plan) -> list[str]:
    out = []
    sc = plan.shared_cause
    if sc.action is not None:
        if sc.action not in plan.actions:
            known = ", ".join(sorted(plan.actions)) or "none"
            out.append(f"shared_cause.action: {sc.action!r} is not defined in actions (defined: {known})")
        elif changes_deployment(plan, sc.action):
            out.append(f"shared_cause.action: {sc.action!r} rolls back or disables features; when "
                       "the baseline fails too a rollback would not help: use a page action")
    if sc.alert in {t.alert for t in plan.triggers}:
        out.append(f"shared_cause.alert: {sc.alert!r} is already a trigger's alert")
    return out
