"""Walking the plan's phases: apply a phase's weight, wait out its duration, ask the gate, then
promote, hold or roll back.

Every step is saved (``state.json``) and audited before its effect, so a restart after a crash
picks up exactly where the rollout was: a phase whose weight was applied is not applied again
and keeps its start time; a weight whose application may have been cut off is applied again
(every weight action sets an absolute weight, so twice is once); a rollback action that may
have been cut off is never run again (a second ``kubectl rollout undo`` re-deploys the bad
revision) and is left for a person.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from canary_guard.durations import format_duration
from canary_guard.plan import Plan

from .actions import run_action
from .gate import Gate
from .state import APPLY, WAIT, State, StateDir, StateError
from .watch import WebhookWatch
from .weights import Applied, apply_weight

log = logging.getLogger("canary_guard.rollout")

EXIT_CODES = {"completed": 0, "rolled_back": 3, "stopped": 3, "aborted": 4}
WEIGHT_ATTEMPTS = 3  # tries of one weight change before the rollout pauses for a person
MIN_INTERVAL = 1.0  # seconds: scaled polling intervals never go below this


def plan_digest(plan: Plan) -> str:
    """What a restart must find unchanged: the phases and the rollout section."""
    data = {"phases": [p.model_dump(mode="json") for p in plan.phases],
            "rollout": plan.rollout.model_dump(mode="json") if plan.rollout else None}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class Rollout:
    def __init__(self, plan: Plan, store: StateDir, gate: Gate | None,
                 watch: WebhookWatch | None = None, *, time_scale: float | None = None,
                 clock: Callable[[], float] = time.time,
                 weight_fn: Callable[..., Applied] = apply_weight):
        if plan.rollout is None:
            raise StateError("the plan has no rollout section: add rollout.weight (see docs/rollout.md)")
        self.plan = plan
        self.spec = plan.rollout
        self.store = store
        self.gate = gate
        self.watch = watch
        self.clock = clock
        self.weight_fn = weight_fn
        self.requested_scale = time_scale
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.state: State | None = None
        self.gate_runs: Counter[str] = Counter()
        self.weight_changes: Counter[str] = Counter()
        self.next_watch = 0.0
        self.watch_errors: tuple[str, ...] = ()
        self.weight_failures = 0
        self.retry_at = 0.0

    @property
    def st(self) -> State:
        """The rollout's state once ``open()`` has read or created it."""
        if self.state is None:
            raise StateError("the rollout is not open: call open() first")
        return self.state

    # -- time -----------------------------------------------------------------------------------

    @property
    def scale(self) -> float:
        return self.state.time_scale if self.state else (self.requested_scale or 1.0)

    def phase_duration(self, index: int) -> float | None:
        d = self.plan.phases[index].duration
        return None if d is None else d * self.scale

    def interval(self, seconds: float) -> float:
        return max(MIN_INTERVAL, seconds * self.scale)

    def phase_end(self) -> float | None:
        st = self.st
        d = self.phase_duration(st.phase)
        return None if d is None or st.phase_started is None else st.phase_started + d

    # -- opening --------------------------------------------------------------------------------

    def open(self) -> State:
        self.store.lock()
        st = self.store.load()
        digest = plan_digest(self.plan)
        if st is None:
            st = State(plan=self.plan.name, digest=digest, started=self.clock(),
                       time_scale=self.requested_scale or 1.0)
            self.state = st
            self.store.save(st)
            self._audit("started", phases=[f"{p.name}:{p.traffic_percent:g}%" for p in self.plan.phases],
                        time_scale=st.time_scale)
            return st
        if st.plan != self.plan.name or st.digest != digest:
            raise StateError(f"{self.store.path} holds a rollout of plan {st.plan!r} with other phases or "
                             "another rollout section: use a new --state-dir for this plan")
        if self.requested_scale is not None and self.requested_scale != st.time_scale:
            raise StateError(f"{self.store.path} runs at --time-scale {st.time_scale:g}, not "
                             f"{self.requested_scale:g}: a phase's clock cannot change speed midway")
        self.state = st
        if not st.terminal:
            self._audit("resumed", **self._resume_note(st))
        return st

    def _resume_note(self, st: State) -> dict[str, Any]:
        ph = self.plan.phases[st.phase]
        note: dict[str, Any] = {"status": st.status, "phase": ph.name, "step": st.step, "weight": st.weight}
        if st.status == "rolling_back" and st.rollback is not None:
            note["note"] = f"finishing the rollback (stage {st.rollback.get('stage')})"
        elif st.step == WAIT:
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.phase_started))
            note["note"] = (f"phase {ph.name} continues: its weight {ph.traffic_percent:g}% was applied at "
                            f"{started} and is not applied again")
        else:
            note["note"] = (f"phase {ph.name}'s weight was not confirmed applied: applying it (again); "
                            "setting an absolute weight twice changes nothing")
        return note

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        """Walk the phases until the rollout completes, rolls back, stops or is aborted."""
        while True:
            with self.lock:
                st = self.st
                if st.terminal:
                    return EXIT_CODES[st.status]
                status, step = st.status, st.step
            if status != "rolling_back" and self._watch_due():
                continue
            if status == "rolling_back":
                self._finish_rollback()
            elif status in ("paused", "awaiting_approval"):
                self._sleep(self._until_watch())
            elif step == APPLY:
                if self.clock() < self.retry_at:
                    self._sleep(min(self.retry_at - self.clock(), self._until_watch()))
                else:
                    self._apply_phase()
            else:
                self._wait_or_gate()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.wake.wait(min(seconds, 60.0))
        self.wake.clear()

    def _until_watch(self) -> float:
        if self.watch is None or not self.watch.enabled():
            return 60.0
        return max(0.0, self.next_watch - self.clock())

    def _wait_or_gate(self) -> None:
        st, now = self.st, self.clock()
        end = self.phase_end()
        if end is None:  # the last phase has no duration: nothing to wait for
            with self.lock:
                self._finish("completed", "the last phase's weight is applied")
            return
        due = max(end, st.next_gate or 0.0)
        if now < due:
            self._sleep(min(due - now, self._until_watch()))
            return
        self._run_gate()

    # -- applying a phase -----------------------------------------------------------------------

    def _apply_phase(self) -> None:
        with self.lock:
            st = self.st
            if st.status != "running" or st.step != APPLY:
                return
            i = st.phase
            ph = self.plan.phases[i]
            if ph.approval and i not in st.approved:
                st.status = "awaiting_approval"
                self.store.save(st)
                self._audit("approval_needed", phase=ph.name, weight=ph.traffic_percent,
                            note=f"run: canary-guard rollout approve --phase {i + 1}")
                return
            previous = st.weight
            self._audit("weight_apply", phase=ph.name, weight=ph.traffic_percent, previous=previous,
                        attempt=self.weight_failures + 1)
        applied = self.weight_fn(self.spec.weight, ph.traffic_percent, previous, phase=ph.name)
        with self.lock:
            self.weight_changes["ok" if applied.ok else "failed"] += 1
            if st.status != "running" or st.phase != i:
                # aborted or rolled back while the weight was being set: that path sets 0 itself
                self._audit("weight_applied" if applied.ok else "weight_failed", phase=ph.name,
                            weight=ph.traffic_percent, detail=applied.detail, note="superseded")
                return
            if not applied.ok:
                self.weight_failures += 1
                self._audit("weight_failed", phase=ph.name, weight=ph.traffic_percent, detail=applied.detail,
                            steps=list(applied.steps), attempt=self.weight_failures)
                if self.weight_failures >= WEIGHT_ATTEMPTS:
                    self.weight_failures = 0
                    self._pause(f"setting the weight of {ph.name} to {ph.traffic_percent:g}% failed "
                                f"{WEIGHT_ATTEMPTS} times: fix it, then resume", by="rollout")
                else:
                    self.retry_at = self.clock() + self.interval(2.0 ** self.weight_failures)
                return
            self.weight_failures = 0
            now = self.clock()
            st.weight, st.effective = ph.traffic_percent, applied.effective
            st.step, st.phase_started = WAIT, now
            st.held_since = st.next_gate = None
            st.gate_runs = 0
            self.store.save(st)
            d = self.phase_duration(i)
            self._audit("weight_applied", phase=ph.name, weight=ph.traffic_percent,
                        effective=applied.effective, started=now, detail=applied.detail,
                        steps=list(applied.steps),
                        gate_after=None if d is None else format_duration(round(d, 3)))

    # -- the gate -------------------------------------------------------------------------------

    def _run_gate(self) -> None:
        st = self.st
        i, since = st.phase, st.phase_started
        ph = self.plan.phases[i]
        if self.gate is None:
            raise StateError("the rollout has no gate to ask")
        decision = self.gate.decide(i + 1, since)
        self.gate_runs[decision.decision] += 1
        now = self.clock()
        with self.lock:
            st.gate_runs += 1
            st.last_decision = {"phase": ph.name, "at": round(now, 3), **decision.summary()}
            self._audit("gate", phase=ph.name, decision=decision.decision, reasons=decision.reasons[:8])
            if st.status != "running" or st.phase != i or st.step != WAIT:
                self.store.save(st)  # paused or aborted while the gate ran: its answer is not acted on
                return
            if decision.decision == "promote":
                if i + 1 < len(self.plan.phases):
                    st.phase, st.step = i + 1, APPLY
                    st.held_since = st.next_gate = None
                    self.store.save(st)
                    self._audit("promote", phase=ph.name, to=self.plan.phases[i + 1].name)
                else:
                    self._finish("completed", f"the gate promoted the last phase {ph.name}")
            elif decision.decision == "rollback":
                self._start_rollback("gate", "; ".join(decision.reasons[:3]) or "the gate decided rollback")
            else:
                st.held_since = st.held_since or now
                st.next_gate = now + self.interval(self.spec.gate_interval)
                held = now - st.held_since
                limit = self.spec.hold_timeout * self.scale
                if limit and held >= limit:
                    self._pause(f"the gate has held {ph.name} for {format_duration(round(held))} "
                                f"(hold_timeout {format_duration(round(limit))}): look at the evidence "
                                "(canary-guard gate), then resume or abort", by="rollout")
                else:
                    self.store.save(st)

    # -- rollback, stop and abort: weight 0, then (after a gate rollback) the rollback action -----

    def _start_rollback(self, source: str, reason: str) -> None:
        st = self.st
        st.status = "rolling_back"
        st.rollback = {"source": source, "reason": reason, "stage": "weight", "at": round(self.clock(), 3),
                       "phase": self.plan.phases[st.phase].name}
        self.store.save(st)
        self._audit("rollback_start", source=source, reason=reason, phase=st.rollback["phase"])
        self.wake.set()

    def _finish_rollback(self) -> None:
        st = self.st
        rb = st.rollback
        if rb is None:
            raise StateError("no rollback to finish")
        if rb["stage"] == "weight":
            applied = Applied(False, 0.0, None, "not tried")
            for attempt in range(1, WEIGHT_ATTEMPTS + 1):
                self._audit("weight_apply", phase=rb["phase"], weight=0, previous=st.weight, attempt=attempt)
                applied = self.weight_fn(self.spec.weight, 0, st.weight, phase=rb["phase"])
                self.weight_changes["ok" if applied.ok else "failed"] += 1
                self._audit("weight_applied" if applied.ok else "weight_failed", phase=rb["phase"], weight=0,
                            detail=applied.detail, steps=list(applied.steps))
                if applied.ok:
                    break
                if attempt < WEIGHT_ATTEMPTS:
                    time.sleep(self.interval(2.0 ** attempt))
            with self.lock:
                if applied.ok:
                    st.weight, st.effective = 0.0, 0.0
                else:
                    rb["weight_error"] = applied.detail  # the rollback action still runs
                rb["stage"] = "action" if rb["source"] == "gate" and self.spec.rollback else "done"
                self.store.save(st)
        if rb["stage"] == "action" and self.spec.rollback is not None:
            seen = self.watch.look(st.started) if self.watch is not None and self.watch.enabled() else None
            if seen is not None:
                with self.lock:
                    rb["stage"], rb["action"] = "done", f"left to the webhook: {seen.detail}"
                    self.store.save(st)
                    self._audit("rollback_action_skipped", action=self.spec.rollback, reason=seen.detail,
                                note="the webhook rolls back; a second undo would re-deploy the bad revision")
            else:
                with self.lock:
                    rb["stage"] = "action_started"
                    self.store.save(st)
                    self._audit("rollback_action_start", action=self.spec.rollback)
                results = run_action(self.plan, self.spec.rollback, reason=rb["reason"])
                with self.lock:
                    ok = bool(results) and all(r.ok for r in results)
                    rb["stage"], rb["action_ok"] = "done", ok
                    rb["action"] = [{"action": r.action, "ok": r.ok, "detail": r.detail} for r in results]
                    self.store.save(st)
                    self._audit("rollback_action_done" if ok else "rollback_action_failed",
                                action=self.spec.rollback, results=rb["action"])
        if rb["stage"] == "action_started":  # found so after a restart: a crash cut the action off
            with self.lock:
                rb["stage"], rb["action_ok"], rb["needs_review"] = "done", False, True
                self.store.save(st)
                self._audit("rollback_action_interrupted", action=self.spec.rollback,
                            note="cut off by a crash: not run again (a second undo would re-deploy the bad "
                                 "revision); check the deployment by hand")
        with self.lock:
            status = {"gate": "rolled_back", "webhook": "stopped", "abort": "aborted"}[rb["source"]]
            self._finish(status, rb["reason"])

    def _finish(self, status: str, reason: str) -> None:
        st = self.st
        st.status = status
        if status != "completed":
            st.pause_reason = None
        self.store.save(st)
        self._audit(status, reason=reason, phase=self.plan.phases[st.phase].name, weight=st.weight)

    # -- the webhook ----------------------------------------------------------------------------

    def _watch_due(self) -> bool:
        """Look for a rollback by the webhook when due; True when one started a stop."""
        if self.watch is None or not self.watch.enabled() or self.clock() < self.next_watch:
            return False
        self.next_watch = self.clock() + self.interval(self.spec.watch_interval)
        seen = self.watch.look(self.st.started)
        errors = tuple(self.watch.errors)
        if errors != self.watch_errors:  # audit a change, not every look
            self.watch_errors = errors
            for err in errors:
                log.warning("cannot tell whether the webhook rolled back", extra={"error": err})
            self._audit("watch_errors" if errors else "watch_ok", errors=list(errors))
        if seen is None:
            return False
        with self.lock:
            if self.st.terminal or self.st.status == "rolling_back":
                return False
            self._audit("webhook_rollback_seen", source=seen.source, detail=seen.detail)
            self._start_rollback("webhook", seen.detail)
        return True

    # -- controls (from the control port) -------------------------------------------------------

    def _pause(self, reason: str, by: str) -> None:
        st = self.st
        st.status, st.pause_reason = "paused", reason
        self.store.save(st)
        self._audit("paused", reason=reason, by=by)

    def pause(self, reason: str = "") -> tuple[bool, str]:
        with self.lock:
            st = self.st
            if st.status not in ("running", "awaiting_approval"):
                return False, f"cannot pause a rollout that is {st.status}"
            self._pause(reason or "paused by a person", by="operator")
            self.wake.set()
            return True, ("paused: no weight changes and no promotion until resume "
                          "(the webhook is still watched)")

    def resume(self) -> tuple[bool, str]:
        with self.lock:
            st = self.st
            if st.status != "paused":
                return False, f"cannot resume a rollout that is {st.status}"
            st.status, st.pause_reason = "running", None
            st.held_since = st.next_gate = None
            self.retry_at = 0.0
            self.store.save(st)
            self._audit("resumed_by_operator", phase=self.plan.phases[st.phase].name)
            self.wake.set()
            return True, "running"

    def abort(self, reason: str = "") -> tuple[bool, str]:
        with self.lock:
            st = self.st
            if st.terminal or st.status == "rolling_back":
                return False, f"cannot abort a rollout that is {st.status}"
            self._start_rollback("abort", reason or "aborted by a person")
            return True, "aborting: the weight goes to 0 (the rollback action is not run)"

    def approve(self, phase: int | None = None) -> tuple[bool, str]:
        """Approve the waiting phase, or a later one ahead of time (``phase`` is 1-based)."""
        with self.lock:
            st = self.st
            if st.terminal or st.status == "rolling_back":
                return False, f"nothing to approve: the rollout is {st.status}"
            index = st.phase if phase is None else phase - 1
            if not 0 <= index < len(self.plan.phases):
                return False, f"no phase {phase}: 1-{len(self.plan.phases)}"
            name = self.plan.phases[index].name
            if not self.plan.phases[index].approval:
                waiting = ", ".join(p.name for p in self.plan.phases if p.approval) or "none"
                return False, f"{name} needs no approval (phases with approval: {waiting})"
            if index < st.phase or (index == st.phase and st.step == WAIT):
                return False, f"{name} has already started"
            if index not in st.approved:
                st.approved.append(index)
            if st.status == "awaiting_approval" and index == st.phase:
                st.status = "running"
            self.store.save(st)
            self._audit("approved", phase=name)
            self.wake.set()
            return True, f"{name} approved"

    # -- reading --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            st = self.st
            doc = st.to_dict()
            ph = self.plan.phases[st.phase]
            end = self.phase_end()
            doc.update({
                "phase_name": ph.name, "phase_number": st.phase + 1, "phases": len(self.plan.phases),
                "target_weight": ph.traffic_percent, "phase_end": end,
                "plan_phases": [{"name": p.name, "traffic_percent": p.traffic_percent,
                                 "duration": self.phase_duration(j),
                                 "approval": p.approval}
                                for j, p in enumerate(self.plan.phases)],
                "watch_errors": list(self.watch_errors),
            })
            return doc

    def _audit(self, event: str, **fields: Any) -> None:
        entry = self.store.audit(event, **fields)
        log.info(event, extra={k: v for k, v in entry.items() if k not in ("ts", "event")
                               and isinstance(v, str | int | float | type(None))})
