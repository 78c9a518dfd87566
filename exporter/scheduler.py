"""Run every (target, endpoint) probe on its own fixed schedule.

Each pair ("job") has a timer on the event loop (``loop.call_at``), spread evenly over the
interval at start (plus a little jitter) so that 10,000 jobs do not fire at once. At each
tick the job's probe starts as its own task with its own timeout (the endpoint's, else the
plan's probe.timeout), so a slow or hung endpoint never delays another. A tick never piles up
probes: when the previous probe of the same job is still running (or waiting for a
concurrency slot), the tick is skipped and counted
(``canary_probe_skipped_total{reason="busy"}``); this is also what happens when a
timeout exceeds ``probe.interval`` and an endpoint answers slowly: its answer is
measured, not cut off at the interval. Concurrency is bounded by ``probe.concurrency``.

A 429 is error reason ``rate_limited`` and the job backs off: no probe before Retry-After
(capped), or, without one, an interval that doubles with each consecutive 429 (capped at
``MAX_BACKOFF``). Skipped ticks count as ``reason="backoff"``.

The exporter probes whether or not anyone scrapes: a null streak and a latency histogram are
only meaningful when every probe is observed, at a steady rate.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

import aiohttp

from canary_guard.judge import judge
from canary_guard.probe import MAX_RETRY_AFTER, ProbeRequest, probe

from .metrics import Metrics, Series

log = logging.getLogger("canary_guard.exporter")

MAX_BACKOFF = MAX_RETRY_AFTER


@dataclass(slots=True, eq=False)
class Job:
    req: ProbeRequest
    series: Series
    next_at: float = 0.0
    task: asyncio.Task | None = None
    not_before: float = 0.0          # loop time; rate-limit backoff
    limited: int = 0                 # consecutive 429s
    last_state: tuple = ()           # (outcome, reason): logged when it changes
    last_pii: tuple = ()             # PII kinds of the last probe: logged when they change
    handle: asyncio.TimerHandle | None = field(default=None, repr=False)


class Scheduler:
    def __init__(self, jobs: list[Job], session: aiohttp.ClientSession, metrics: Metrics, *,
                 interval: float, max_body: int, concurrency: int):
        self.jobs = jobs
        self.session = session
        self.metrics = metrics
        self.interval = interval
        self.max_body = max_body
        self._sem = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.probes = 0  # completed probes, for /healthz

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the scheduler has not started")
        return self._loop

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        now, n = loop.time(), max(len(self.jobs), 1)
        slot = self.interval / n
        for i, job in enumerate(self.jobs):
            job.next_at = now + i * slot + random.uniform(0, min(slot, 0.05 * self.interval))
            job.handle = loop.call_at(job.next_at, self._tick, job)

    def _tick(self, job: Job) -> None:
        if self._stopping:
            return
        loop = self.loop
        now = loop.time()
        if job.task is not None:
            job.series.skip("busy")
        elif now < job.not_before:
            job.series.skip("backoff")
        else:
            job.task = task = loop.create_task(self._run(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        job.next_at += self.interval
        if job.next_at <= now:  # the loop was blocked for longer than an interval: catch up
            job.next_at += ((now - job.next_at) // self.interval + 1) * self.interval
        job.handle = loop.call_at(job.next_at, self._tick, job)

    async def _run(self, job: Job) -> None:
        req = job.req
        try:
            async with self._sem:
                self.metrics.inflight += 1
                try:
                    result = await probe(self.session, req, req.timeout, self.max_body)
                finally:
                    self.metrics.inflight -= 1
            outcome = judge(result, req.required_fields, req.method)
            job.series.record(outcome)
            self.probes += 1
            if outcome.reason == "rate_limited":
                job.limited += 1
                wait = result.retry_after
                if wait is None:
                    wait = min(self.interval * 2 ** job.limited, MAX_BACKOFF)
                job.not_before = self.loop.time() + wait
                log.warning("rate limited: backing off", extra={
                    "track": req.track, "endpoint": req.endpoint, "backoff_seconds": round(wait, 3)})
            else:
                job.limited = 0
            state = (outcome.outcome, outcome.reason)
            if state != job.last_state:
                level = logging.INFO if outcome.outcome in ("success", "disabled") else logging.WARNING
                if job.last_state or level != logging.INFO:
                    log.log(level, "probe outcome changed", extra={
                        "track": req.track, "endpoint": req.endpoint, "outcome": outcome.outcome,
                        "reason": outcome.reason or "", "status": outcome.status or 0})
                job.last_state = state
            if outcome.pii != job.last_pii:
                # the kinds only: the matched text is response content and never logged
                if outcome.pii:
                    log.error("PII exposure in responses", extra={
                        "track": req.track, "endpoint": req.endpoint, "kinds": ",".join(outcome.pii)})
                else:
                    log.info("PII exposure over", extra={"track": req.track, "endpoint": req.endpoint})
                job.last_pii = outcome.pii
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not stop the schedule of this job
            log.exception("probe failed unexpectedly", extra={"track": req.track,
                                                              "endpoint": req.endpoint})
        finally:
            job.task = None

    async def stop(self, grace: float = 2.0) -> None:
        """Stop ticking; let in-flight probes finish for ``grace`` seconds, then cancel them."""
        self._stopping = True
        for job in self.jobs:
            if job.handle is not None:
                job.handle.cancel()
        pending = list(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
