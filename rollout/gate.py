"""Asking the gate: the same decision as ``canary-guard gate``, never a copy of it.

Components never import each other, so the rollout runs the gate as a process
(``python -m canary_guard gate --json``) or asks a running ``canary-guard gate serve`` over
HTTP. Both answer the same JSON report. Anything else than a clear promote (an error, a
timeout, an answer that is not a report) is a hold: the rollout never advances on a doubt.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from canary_guard.process import run_argv

PROMOTE, HOLD, ROLLBACK, ERROR = "promote", "hold", "rollback", "error"
_EXIT = {0: PROMOTE, 2: HOLD, 3: ROLLBACK}


@dataclass(frozen=True)
class Decision:
    decision: str  # promote | hold | rollback | error (an error holds)
    reasons: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None

    def summary(self, limit: int = 5) -> dict[str, Any]:
        return {"decision": self.decision, "reasons": self.reasons[:limit]}


def _from_report(doc: Any, expected: str | None) -> Decision:
    if not isinstance(doc, dict) or doc.get("decision") not in (PROMOTE, HOLD, ROLLBACK):
        return Decision(ERROR, ["the gate's answer is not a decision"])
    if expected is not None and doc["decision"] != expected:
        return Decision(ERROR, [f"the gate's exit status says {expected}, its report {doc['decision']}"])
    reasons = [str(r) for r in doc.get("reasons") or []]
    return Decision(doc["decision"], reasons, doc)


class Gate(Protocol):
    """What the rollout asks at the end of a phase (``GateProcess``, ``GateService``)."""

    def decide(self, phase: int, since: float | None) -> Decision: ...


class GateProcess:
    """``python -m canary_guard gate --json`` with the rollout's plan."""

    def __init__(self, plan_path: str, prometheus: str, timeout: float, extra: list[str] | None = None):
        self.plan_path = plan_path
        self.prometheus = prometheus
        self.timeout = timeout
        self.extra = list(extra or [])

    def argv(self, phase: int, since: float | None) -> list[str]:
        argv = [sys.executable, "-m", "canary_guard", "gate", "--plan", self.plan_path,
                "--prometheus", self.prometheus, "--phase", str(phase), "--json", *self.extra]
        if since is not None:
            argv += ["--since", f"{since:.3f}"]
        return argv

    def decide(self, phase: int, since: float | None) -> Decision:
        """``phase`` is 1-based, as on the gate's command line."""
        done = run_argv(self.argv(phase, since), self.timeout)
        expected = None
        if done.outcome == "ok":
            expected = PROMOTE
        elif done.outcome == "failed":
            code = done.detail.split(";")[0].removeprefix("exit ").strip()
            expected = _EXIT.get(int(code)) if code.isdigit() else None
            if expected is None:
                return Decision(ERROR, [f"the gate failed: {done.detail[:500]}"])
        else:
            return Decision(ERROR, [f"the gate did not answer: {done.detail[:500]}"])
        try:
            doc = json.loads(done.stdout)
        except ValueError:
            return Decision(ERROR, ["the gate printed no JSON report"])
        return _from_report(doc, expected)


class GateService:
    """``GET {url}/gate?phase=N&since=T`` of a running ``canary-guard gate serve``."""

    def __init__(self, url: str, timeout: float, client: httpx.Client | None = None,
                 params: dict[str, str] | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client = client or httpx.Client(follow_redirects=False)
        self.params = dict(params or {})  # more of gate serve's query: track, baseline, window, at

    def decide(self, phase: int, since: float | None) -> Decision:
        params: dict[str, str] = {**self.params, "phase": str(phase)}
        if since is not None:
            params["since"] = f"{since:.3f}"
        try:
            resp = self.client.get(f"{self.url}/gate", params=params, timeout=self.timeout)
        except httpx.HTTPError as err:
            return Decision(ERROR, [f"gate serve at {self.url} did not answer: {type(err).__name__}: {err}"])
        try:
            doc = resp.json()
        except ValueError:
            return Decision(ERROR, [f"gate serve answered HTTP {resp.status_code}, not JSON"])
        if resp.status_code == 200:
            return _from_report(doc, PROMOTE)
        if isinstance(doc, dict) and doc.get("decision") in (HOLD, ROLLBACK):
            return _from_report(doc, doc["decision"])
        return Decision(ERROR, [f"gate serve answered HTTP {resp.status_code}: "
                                f"{(doc or {}).get('error') if isinstance(doc, dict) else doc}"])
