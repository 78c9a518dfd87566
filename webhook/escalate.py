"""Escalation through Alertmanager: a failed action reaches the same people as every alert.

While a run that an incident started (its own action, or one an operator started from the page)
has ended ``failed``, ``partial``, ``refused`` or ``needs_review`` and nobody has decided on the
incident since, the webhook posts ``CanaryGuardActionFailed`` to every Alertmanager it was given
(``--alertmanager URL``, API v2 ``POST /api/v2/alerts``), with ``endsAt`` a few minutes ahead,
and posts it again well before that time runs out: the alert stays firing as long as the
incident waits for a person, and ends by itself if the webhook dies (no alert stuck forever).
When a person decides, the alert is posted once more with ``endsAt`` = now: resolved.

Labels are bounded: ``run`` (one per failed run still open), ``action``, ``track`` and
``endpoint`` are plan names (anything else is ``unknown``); the reason is redacted and cut.
Alertmanager routes these to people only (``rules/notify.py``), never back to the webhook.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import Counter, Gauge

from canary_guard import contract
from canary_guard.plan import Plan

from . import redact

log = logging.getLogger("webhook.escalate")

SYNC_EVERY = 2.0  # seconds between looks at the store (one small query)
REPOST_EVERY = 30.0  # an open alert is posted again this often ...
TTL = 180.0  # ... with endsAt this far ahead: it ends by itself 3 minutes after the webhook stops
REASON_LIMIT = 400


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class Escalator:
    def __init__(self, store: Any, plan: Plan, urls: list[str], external_url: str | None = None,
                 registry: Any = None, client: httpx.Client | None = None,
                 sync_every: float = SYNC_EVERY, repost_every: float = REPOST_EVERY, ttl: float = TTL):
        self.store, self.plan = store, plan
        self.urls = [u.rstrip("/") for u in urls]
        self.external_url = external_url.rstrip("/") if external_url else None
        self.client = client or httpx.Client(timeout=5.0, follow_redirects=False)
        self.sync_every, self.repost_every, self.ttl = sync_every, repost_every, ttl
        self._open: dict[str, dict[str, Any]] = {}  # run id -> alert as last posted
        self._posted_at = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: dict[str, str] = {}  # redacted URL -> last error (shown on /healthz)
        self._actions = set(plan.actions)
        self._tracks = {t.name for t in plan.targets}
        self._endpoints = {e.name for e in plan.endpoints}
        self.posts = self.open_gauge = None
        if registry is not None:
            self.posts = Counter(contract.WEBHOOK_ALERTMANAGER_POSTS.removesuffix("_total"),
                                 "Posts of CanaryGuardActionFailed to Alertmanager, by outcome",
                                 ["outcome"], registry=registry)
            for outcome in ("ok", "error"):
                self.posts.labels(outcome)
            self.open_gauge = Gauge(contract.WEBHOOK_OPEN_ESCALATIONS,
                                    "Runs whose failure waits for a person's decision", registry=registry)
            self.open_gauge.set_function(lambda: len(self._open))

    # -- what is open --------------------------------------------------------------------------

    def _bounded(self, value: str | None, known: set[str]) -> str:
        return value if value in known else ("" if not value else "unknown")

    def alert(self, run: dict[str, Any], ends_at: float) -> dict[str, Any]:
        action = self._bounded(run["action"], self._actions)
        track = self._bounded(run["track"], self._tracks)
        endpoint = self._bounded(run["endpoint"], self._endpoints)
        where = " ".join(x for x in (f"for {endpoint}" if endpoint else "",
                                     f"on {track}" if track else "") if x)
        reason = redact.text(run["reason"] or "", limit=REASON_LIMIT)
        incident_url = f"{self.external_url}/#incident-{run['incident']}" if self.external_url else ""
        labels = {"alertname": contract.ALERT_ACTION_FAILED, "severity": "critical",
                  contract.ALERT_RUN: str(run["run"]), "action": action, "plan": self.plan.name}
        if track:
            labels["track"] = track
        if endpoint:
            labels["endpoint"] = endpoint
        annotations = {
            "summary": f"{action} {where} ended {run['status']}: a person must decide".replace("  ", " "),
            "description": (f"Run {run['run']} of the plan action {action} (incident {run['incident']}, "
                            f"{run['alertname']}) ended {run['status']}: {reason}. Nothing more happens "
                            "automatically. On the webhook's page: roll back now, disable the feature, "
                            "or dismiss with a note."),
            "webhook_action": "none: waiting for a person (roll back now, disable the feature, or dismiss)",
            "runbook_url": f"{self.plan.runbook_url}#{contract.ALERT_ACTION_FAILED.lower()}",
        }
        if incident_url:
            annotations["incident_url"] = incident_url
        return {"labels": labels, "annotations": annotations,
                "startsAt": _iso(run["finished_at"] or time.time()), "endsAt": _iso(ends_at),
                "generatorURL": incident_url}

    def sync(self, now: float | None = None) -> int:
        """Post what opened, re-post what is still open when due, resolve what closed.
        Returns how many alerts were posted."""
        now = time.time() if now is None else now
        runs = {str(r["run"]): r for r in self.store.failed_runs()}
        out: list[dict[str, Any]] = []
        repost = now - self._posted_at >= self.repost_every
        for rid, run in runs.items():
            if rid not in self._open or repost:
                self._open[rid] = self.alert(run, now + self.ttl)
                out.append(self._open[rid])
        for rid in [r for r in self._open if r not in runs]:
            closed = self._open.pop(rid)
            out.append({**closed, "endsAt": _iso(now)})  # resolved: a person decided
        if out and self.urls:
            if self._post(out) and repost:
                self._posted_at = now
        elif repost:
            self._posted_at = now
        return len(out)

    def _post(self, alerts: list[dict[str, Any]]) -> bool:
        ok = True
        for url in self.urls:
            shown = redact.url(url)
            try:
                resp = self.client.post(f"{url}/api/v2/alerts", json=alerts)
                if resp.status_code >= 300:
                    body = redact.text(resp.text, limit=200)
                    raise httpx.HTTPStatusError(f"HTTP {resp.status_code}: {body}",
                                                request=resp.request, response=resp)
            except httpx.HTTPError as err:
                ok = False
                self.last_error[shown] = redact.text(f"{type(err).__name__}: {err}", limit=300)
                log.warning("posting to Alertmanager failed; retrying", extra={
                    "alertmanager": shown, "error": self.last_error[shown]})
                if self.posts:
                    self.posts.labels("error").inc()
                continue
            self.last_error.pop(shown, None)
            if self.posts:
                self.posts.labels("ok").inc()
        if not ok:
            self._posted_at = 0.0  # try again at the next sync
        return ok

    def open_runs(self) -> int:
        return len(self._open)

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="webhook-escalate", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # a broken database or network must not end escalation for good
                log.exception("escalation sync failed")
            self._wake.wait(self.sync_every)
            self._wake.clear()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self.client.close()
