"""The worker: claims action runs from the store and executes them, step by step.

A run is one plan action for one incident; a sequence action has several steps, run in
order. Each step is prepared (what exactly would be done), checked against its cooldown,
recorded as an attempt *before* it runs, run, and its outcome recorded together with the
run's progress: a step that finished is never done again. A failed attempt is retried with
exponential backoff (the run goes back to the queue with a due time, so other runs are not
held up) up to ``plan.webhook.retry.attempts``; a failure that cannot succeed on retry (HTTP
4xx, missing deployment, label refused) and a final failure are escalated at once as a page.

The most urgent due run is taken first (emergency rollback, rollback, other changes, pages),
and one thread takes only rollbacks, so a rollback never waits behind a slow page.

Runs are leased: while a run is in hand its lease is renewed. When a process dies mid-run,
whoever claims the run next (another replica when its lease runs out; the same process on
its next start with SQLite) takes it over: the step that was in flight is done again if it is
safe to repeat (a feature disable, a page), and otherwise (``kubectl rollout undo``, a
command) recorded as ``interrupted``, never redone, and paged; the steps after it still run.
The run then ends ``needs_review``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from canary_guard.plan import Plan

from . import store as st
from .actions import ActionSet, AlertContext, Outcome, Refused, RollbackAction, describe
from .metrics import WebhookMetrics
from .store import Run, Store
from .store.sql import LostLease

log = logging.getLogger("webhook.worker")

DEFAULT_LEASE = 15.0  # seconds a claimed run stays ours without a renewal


class Worker:
    def __init__(self, store: Store, plan: Plan, actions: ActionSet, metrics: WebhookMetrics,
                 dry_run: bool = False, threads: int = 1, lease: float = DEFAULT_LEASE):
        self.store, self.plan, self.actions, self.metrics = store, plan, actions, metrics
        self.dry_run = dry_run
        self.cooldown = plan.webhook.cooldown
        self.retry = plan.webhook.retry
        self.nthreads = max(1, threads)
        self.lease = lease
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Runs a previous process left running (SQLite): taken over by the first claim."""
        ids = self.store.recover()
        for rid in ids:
            log.warning("run left running by the previous process: taking it over", extra={"run": rid})
        return ids

    def start(self) -> None:
        # One thread only for rollbacks (and emergency rollbacks), the others for anything.
        lanes: list[tuple[str, int | None]] = [("rollbacks", st.ROLLBACK)]
        lanes += [(str(i), None) for i in range(self.nthreads)]
        for name, max_priority in lanes:
            t = threading.Thread(target=self._loop, args=(max_priority,), name=f"webhook-worker-{name}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat, name="webhook-lease", daemon=True)
        hb.start()
        self._threads.append(hb)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking runs; wait up to ``timeout`` for attempts in flight, then give up the
        leases of runs still in hand so that another replica takes them over at once."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._threads:
            try:
                released = self.store.release()
            except Exception:  # the database may be gone too: the leases simply run out
                log.exception("could not release the leases of runs in flight")
            else:
                if released:
                    log.warning("stopped with runs in flight; released for takeover",
                                extra={"runs": released})

    def wake(self) -> None:
        self._wake.set()

    def _loop(self, max_priority: int | None) -> None:
        while not self._stop.is_set():
            try:
                if self.run_once(max_priority=max_priority):
                    continue
                due = self.store.next_due(max_priority)  # only what this thread may take
                wait = 1.0 if due is None else min(1.0, max(0.005, due - time.time()))
            except Exception:  # a broken database must not kill the worker silently
                log.exception("worker loop error")
                wait = 1.0
            self._wake.wait(wait)
            self._wake.clear()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 4):
            try:
                self.store.renew(self.lease)
            except Exception:
                log.exception("could not renew the leases of runs in flight")

    # -- one run --------------------------------------------------------------------------------

    def run_once(self, now: float | None = None, max_priority: int | None = None) -> bool:
        """Claim and advance one due run; False when nothing is due."""
        run = self.store.claim(self.lease, max_priority=max_priority, now=now)
        if run is None:
            return False
        try:
            self._advance(run)
        except LostLease as err:
            log.error("another replica took this run over; leaving it to them",
                      extra={"run": run.id, "why": str(err)})
        except Exception as err:
            log.exception("action run crashed", extra={"run": run.id, "action": run.action})
            reason = f"internal error while running the action: {type(err).__name__}: {err}"
            try:
                self.store.finish(run.id, st.FAILED, reason, run.outcomes)
            except LostLease:
                return True
            self.metrics.run_finished(run.action, st.FAILED)
            self._escalate(run, reason)
        return True

    def _advance(self, run: Run) -> None:
        ctx = AlertContext(run_id=run.id, action=run.action, labels=run.labels,
                           annotations=run.annotations, fingerprint=run.fingerprint,
                           starts_at=run.starts_at, reason=run.cause)
        steps = self.actions.steps(run.action)
        outcomes = list(run.outcomes)
        i, attempt = run.step, run.attempt
        if run.taken_over:
            i, attempt = self._take_over(run, steps, outcomes)
        while i < len(steps):
            if self._stop.is_set() and attempt == 0 and i > run.step:
                # Shutting down between steps: leave the rest queued for the next start.
                self.store.requeue(run.id, i, 0, time.time(), "stopped between steps; resumes on start")
                return
            action = steps[i]
            result = self._step(run, ctx, i, action, attempt)
            if result is None:  # requeued for a retry
                return
            outcomes.append(result)
            i, attempt = i + 1, 0
            if i < len(steps):
                self.store.progress(run.id, i, outcomes)
        status = summarize(outcomes)
        reason = "; ".join(f"{o['step']}: {o['outcome']}" + (f" ({o['detail']})" if o.get("detail") and
                                                            o["outcome"] not in ("ok", "dry_run") else "")
                           for o in outcomes)
        self.store.finish(run.id, status, reason, outcomes)
        self.metrics.run_finished(run.action, status)
        log.info("action finished", extra={"run": run.id, "action": run.action, "status": status})

    def _take_over(self, run: Run, steps: list, outcomes: list[dict[str, Any]]) -> tuple[int, int]:
        """A run whose process died: decide about the step that was in flight. Returns the
        step and attempt to go on with."""
        inflight = run.inflight
        log.warning("taking over a run whose webhook stopped", extra={
            "run": run.id, "action": run.action, "step": run.step,
            "inflight": inflight.step_action if inflight else "none"})
        if inflight is None or inflight.step >= len(steps):
            return run.step, run.attempt  # it stopped between steps: nothing is in doubt
        step = steps[inflight.step]
        if step.idempotent:
            self.store.interrupt_attempt(inflight.id, "the webhook stopped mid-attempt; this step is "
                                                      "safe to repeat, so it is done again")
            self.metrics.attempts.labels(step.name, "interrupted").inc()
            return inflight.step, inflight.attempt
        detail = (f"the webhook stopped while {step.name} ({step.kind}) was running; its effect is "
                  "unknown and it is not safe to repeat: check it by hand")
        self.store.interrupt_attempt(inflight.id, detail)
        self.metrics.attempts.labels(step.name, "interrupted").inc()
        outcomes.append({"step": step.name, "outcome": "interrupted", "detail": detail,
                         "attempts": inflight.attempt})
        self._escalate(run, f"run {run.id} ({run.action}): {detail}")
        self.store.progress(run.id, inflight.step + 1, outcomes)
        return inflight.step + 1, 0

    def _step(self, run: Run, ctx: AlertContext, i: int, action: RollbackAction,
              attempt: int) -> dict[str, Any] | None:
        """Run one step of a run; returns its final outcome, or None when it was requeued."""
        name = action.name
        try:
            command = action.prepare(ctx)
        except Refused as err:
            self.store.record_step(run.id, i, name, action.kind, "refused", {}, str(err))
            self.metrics.attempts.labels(name, "refused").inc()
            log.warning("action refused", extra={"run": run.id, "action": name, "why": str(err)})
            self._escalate(run, f"{name} refused: {err}")
            return {"step": name, "outcome": "refused", "detail": str(err)}

        key = action.cooldown_key()
        if key and attempt == 0:
            holder = (self.store.cooldown(key) if self.dry_run
                      else self.store.claim_cooldown(key, name, run.id, self.cooldown))
            if holder:
                until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(holder["until"]))
                detail = (f"cooldown: run {holder['run_id']} ({holder['action']}) did this at "
                          f"{time.strftime('%H:%M:%SZ', time.gmtime(holder['started_at']))}; "
                          f"refused until {until}")
                self.store.record_step(run.id, i, name, action.kind, "cooldown", command, detail)
                self.metrics.cooldown_refusals.labels(name).inc()
                self.metrics.attempts.labels(name, "cooldown").inc()
                log.warning("action refused by cooldown", extra={"run": run.id, "action": name})
                return {"step": name, "outcome": "cooldown", "detail": detail}

        if self.dry_run:
            detail = "dry run: would " + describe(command)
            self.store.record_step(run.id, i, name, action.kind, "dry_run", command, detail)
            self.metrics.attempts.labels(name, "dry_run").inc()
            log.info("dry run", extra={"run": run.id, "action": name, "would": describe(command)})
            return {"step": name, "outcome": "dry_run", "detail": detail}

        attempt += 1
        attempt_id = self.store.start_attempt(run.id, i, name, action.kind, attempt, command)
        started = time.monotonic()
        try:
            out = action.execute(command, ctx)
        except Exception as err:  # an action bug is a failed attempt, not a dead worker
            out = Outcome(False, "failed", False, f"internal error: {type(err).__name__}: {err}")
        took = time.monotonic() - started
        self.store.finish_attempt(attempt_id, out.outcome, out.retryable, out.detail)
        self.metrics.attempts.labels(name, out.outcome).inc()
        self.metrics.duration.labels(name).observe(took)
        log.info("action attempt", extra={"run": run.id, "action": name, "attempt": attempt,
                                          "outcome": out.outcome, "took": f"{took:.3f}"})
        if out.ok:
            return {"step": name, "outcome": "ok", "detail": out.detail, "attempts": attempt}
        if out.retryable and attempt < self.retry.attempts:
            delay = min(self.retry.backoff * 2 ** (attempt - 1), self.retry.max_backoff)
            self.store.requeue(run.id, i, attempt, time.time() + delay,
                               f"{name}: attempt {attempt}/{self.retry.attempts} {out.outcome}; "
                               f"retry in {delay:g}s")
            self.wake()
            return None
        why = ("cannot succeed on retry" if not out.retryable
               else f"gave up after {attempt} attempts")
        self._escalate(run, f"{name} failed ({why}): {out.detail}")
        return {"step": name, "outcome": "failed", "detail": out.detail, "attempts": attempt}

    def _escalate(self, run: Run | None, reason: str) -> None:
        """Page a human about a run: unless the run is itself a page (no page storms)."""
        if run is None or run.parent_run_id is not None or self.actions.is_page(run.action):
            return
        # A page about a failed or doubtful rollback comes right after the rollbacks.
        priority = min(run.priority + 1, st.PAGE)
        rid = self.store.add_run(self.actions.escalation, f"escalated from run {run.id} "
                                 f"({run.action}): {reason}", run.incident_id, run.id,
                                 dry_run=self.dry_run, priority=priority)
        self.metrics.escalations.labels(self.metrics.action_label(run.action)).inc()
        log.warning("escalated as a page", extra={"run": run.id, "page_run": rid, "why": reason})
        self.wake()


def summarize(outcomes: list[dict[str, Any]]) -> str:
    kinds = {o["outcome"] for o in outcomes}
    good = kinds & {"ok"}
    if not kinds:
        return st.SUCCEEDED
    if "interrupted" in kinds:
        return st.NEEDS_REVIEW  # someone must check what the interrupted step did
    if kinds == {"dry_run"}:
        return st.DRY_RUN
    if kinds <= {"ok", "dry_run"}:
        return st.SUCCEEDED
    if "failed" in kinds:
        return st.PARTIAL if good else st.FAILED
    if good:
        return st.PARTIAL
    if kinds == {"cooldown"}:
        return st.COOLDOWN
    return st.REFUSED
