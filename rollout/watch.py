"""Has the webhook rolled the release back? Two independent sources, either one is enough:

- Prometheus: an alert is firing whose ``action`` label is one of the plan's rollback actions.
  Alertmanager delivers it to the webhook, which rolls back: the rollout must stop, and must
  not add an undo of its own (a second ``kubectl rollout undo`` re-deploys the bad revision).
- The webhook's ``GET /api/actions``: a run of a rollback action since the rollout started
  (dry runs, cooldown refusals and unknown actions did nothing and do not count). With
  operator auth on, the webhook wants a read token: ``rollout.webhook.token_env``/``token_file``.

A source that cannot be reached is reported (and audited) but stops nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from canary_guard.contract import ALERT_ACTION
from canary_guard.plan import KubectlRollback, Plan, Sequence
from canary_guard.plan.rollout import RolloutWebhook

# Runs that changed nothing (the webhook's run statuses).
INERT_RUNS = ("dry_run", "cooldown", "refused", "unknown_action")


def rollback_actions(plan: Plan) -> list[str]:
    """Plan actions that roll the release back: kubectl undos, sequences holding one, and the
    rollout's own rollback action."""
    undo = {n for n, a in plan.actions.items() if isinstance(a, KubectlRollback)}
    out = set(undo)
    for name, action in plan.actions.items():
        if isinstance(action, Sequence) and undo & set(action.steps):
            out.add(name)
    if plan.rollout and plan.rollout.rollback:
        out.add(plan.rollout.rollback)
    return sorted(out)


@dataclass(frozen=True)
class Sighting:
    source: str  # alerts | webhook
    detail: str


class WebhookWatch:
    def __init__(self, plan: Plan, prometheus: str | None, client: httpx.Client | None = None):
        self.plan = plan
        self.actions = rollback_actions(plan)
        r = plan.rollout
        self.prometheus = prometheus.rstrip("/") if prometheus and r and r.watch_alerts else None
        self.webhook = r.webhook if r else None
        self.client = client or httpx.Client(follow_redirects=False)
        self.errors: list[str] = []  # what could not be asked in the last look

    def enabled(self) -> bool:
        return bool(self.actions) and (self.prometheus is not None or self.webhook is not None)

    def look(self, since: float) -> Sighting | None:
        self.errors = []
        if not self.actions:
            return None
        found = self._alerts() if self.prometheus else None
        if found is None and self.webhook is not None:
            found = self._webhook(self.webhook, since)
        return found

    def alerts_query(self) -> str:
        names = "|".join(re.escape(a) for a in self.actions)
        return f'ALERTS{{alertstate="firing",{ALERT_ACTION}=~"{names}"}}'

    def _alerts(self) -> Sighting | None:
        try:
            resp = self.client.post(f"{self.prometheus}/api/v1/query", data={"query": self.alerts_query()},
                                    timeout=10)
            body = resp.json()
            result = body["data"]["result"] if body.get("status") == "success" else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
            self.errors.append(f"Prometheus {self.prometheus}: {type(err).__name__}: {err}")
            return None
        if result is None:
            self.errors.append(f"Prometheus {self.prometheus}: {body.get('error')}")
            return None
        if not result:
            return None
        labels = result[0]["metric"]
        where = ", ".join(f"{k}={labels[k]}" for k in ("track", "endpoint") if labels.get(k))
        return Sighting("alerts", f"alert {labels.get('alertname', '?')} is firing ({where}) with action "
                                  f"{labels.get(ALERT_ACTION)}: the webhook rolls back")

    def _token(self, w: RolloutWebhook) -> str | None:
        if w.token_env and os.environ.get(w.token_env):
            return os.environ[w.token_env].strip()
        if w.token_file:
            try:
                return Path(w.token_file).read_text().strip()
            except OSError as err:
                self.errors.append(f"webhook token file {w.token_file}: {err.strerror}")
        return None

    def _webhook(self, w: RolloutWebhook, since: float) -> Sighting | None:
        token = self._token(w)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{w.url}/api/actions"
        try:
            resp = self.client.get(url, params={"since": f"{since:.3f}", "limit": "500"}, headers=headers,
                                   timeout=w.timeout)
        except httpx.HTTPError as err:
            self.errors.append(f"webhook {url}: {type(err).__name__}: {err}")
            return None
        if resp.status_code in (401, 403):
            self.errors.append(f"webhook {url}: HTTP {resp.status_code}: set rollout.webhook.token_env "
                               "or token_file to a token that may read /api/actions")
            return None
        try:
            runs = resp.json()["actions"]
        except (ValueError, KeyError, TypeError):
            self.errors.append(f"webhook {url}: HTTP {resp.status_code}, not the webhook's JSON")
            return None
        for run in runs:
            if run.get("action") in self.actions and not run.get("dry_run") \
                    and run.get("status") not in INERT_RUNS and (run.get("created_at") or 0) >= since:
                inc = run.get("incident") or {}
                return Sighting("webhook", f"the webhook ran {run['action']} (run {run.get('id')}, "
                                           f"{run.get('status')}) for {inc.get('alertname', 'an alert')}")
        return None
