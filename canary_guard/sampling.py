"""Probe a running target a bounded number of times: what ``plan learn`` and the preflight see.

Every request is the exporter's own probe (``canary_guard.probe``: same method, path, body,
headers, auth, timeout and bounded read) and every answer is judged by the exporter's judge,
so what a sample shows is exactly what the guard will see. One probe at a time per endpoint,
the endpoints side by side, paced below the service's documented rate limits (``Pacing``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from .judge import NOT_JSON, ProbeOutcome, ProbeResult, judge, missing_fields, non_null_fields, parse_body
from .plan import Endpoint, Plan
from .probe import ProbeRequest, build_request, new_session, probe

# Use at most this share of each documented limit: the service's real users share it.
LIMIT_SHARE = 0.5


class SamplingError(ValueError):
    """A sample that cannot be taken as asked; the message says which setting to change."""


@dataclass(frozen=True)
class Answer:
    """One judged probe, without its content (only which fields it carried)."""

    outcome: ProbeOutcome
    fields: tuple[str, ...] | None  # top-level non-null fields of a JSON object answer, in order
    missing: tuple[str, ...]  # required fields absent or null (2xx answers only)
    body: str  # "object", "null", "empty", "not_json", "other" (a JSON array, a number, ...)


@dataclass
class Sample:
    """Every answer of one endpoint of one target."""

    endpoint: Endpoint
    answers: list[Answer] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[str]:
        """``200``, ``503``, ... and error reasons without a status (``timeout``, ``connect``)."""
        return Counter(
            str(a.outcome.status) if a.outcome.status is not None else (a.outcome.reason or "none")
            for a in self.answers
        )

    @property
    def latencies(self) -> list[float]:
        """Seconds to the complete response, sorted (timeouts and resets have none)."""
        return sorted(a.outcome.duration for a in self.answers if a.outcome.duration is not None)

    def quantile(self, q: float) -> float | None:
        """The q-quantile of the latencies (nearest rank: an observed value, never invented)."""
        xs = self.latencies
        if not xs:
            return None
        return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]

    @property
    def objects(self) -> list[Answer]:
        """2xx answers whose body is a JSON object."""
        return [a for a in self.answers if a.fields is not None]

    def fields_always(self) -> list[str]:
        """Top-level fields present and non-null in every 2xx answer, in the order the service
        writes them (empty without a 2xx answer, or when one of them is no JSON object)."""
        ok = [a for a in self.answers if a.outcome.status is not None and 200 <= a.outcome.status < 300]
        if not ok or any(a.fields is None for a in ok):
            return []
        common = set.intersection(*(set(a.fields or ()) for a in ok))
        return [f for f in (ok[0].fields or ()) if f in common]


@dataclass(frozen=True)
class Pacing:
    """How fast a sample may go: a gap between two probes of one endpoint, a gap between any
    two probes, and a cap on the requests of one run, all derived from the plan's rate limits."""

    endpoint_gap: float  # seconds between two probes of one endpoint
    global_gap: float  # seconds between any two probes
    max_requests: int | None  # per target and run; None: no cap

    @classmethod
    def from_plan(cls, plan: Plan, interval: float | None = None) -> Pacing:
        limits = plan.rate_limits
        gap = 0.0
        if limits.per_endpoint_per_minute:
            gap = 60 / (limits.per_endpoint_per_minute * LIMIT_SHARE)
        if interval is not None:
            if interval < gap:
                raise SamplingError(
                    f"--interval {interval:g}s is faster than rate_limits.per_endpoint_per_minute "
                    f"({limits.per_endpoint_per_minute}) allows at {LIMIT_SHARE:.0%} of it: use "
                    f"{gap:g}s or more"
                )
            gap = interval
        global_gap = 1 / (limits.burst * LIMIT_SHARE) if limits.burst else 0.0
        cap = None
        if limits.total_per_hour and not limits.probe_exempt:
            cap = max(1, math.floor(limits.total_per_hour * LIMIT_SHARE))
        return cls(gap, global_gap, cap)

    def check(self, requests: int) -> None:
        if self.max_requests is not None and requests > self.max_requests:
            raise SamplingError(
                f"{requests} requests per target would use more than {LIMIT_SHARE:.0%} of "
                f"rate_limits.total_per_hour ({self.max_requests} of "
                f"{round(self.max_requests / LIMIT_SHARE)}): lower --count, or set "
                "rate_limits.probe_exempt if the probe's key is exempt"
            )


class _Clock:
    """Hands out send times at least ``gap`` apart across every endpoint of a target."""

    def __init__(self, gap: float):
        self.gap = gap
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        if self.gap <= 0:
            return
        async with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.gap
        if at > now:
            await asyncio.sleep(at - now)


def answer_of(req: ProbeRequest, result: ProbeResult) -> Answer:
    outcome = judge(result, req.required_fields, req.method)
    status = result.status
    if result.error is not None or status is None or not 200 <= status < 300:
        return Answer(outcome, None, (), "other")
    doc = parse_body(result.body)
    if doc is NOT_JSON:
        kind = "empty" if not result.body.strip() else "not_json"
    elif doc is None:
        kind = "null"
    elif isinstance(doc, dict):
        kind = "object"
    else:
        kind = "other"
    fields = tuple(non_null_fields(doc)) if kind == "object" else None
    missing = tuple(missing_fields(doc if kind == "object" else None, req.required_fields))
    return Answer(outcome, fields, missing, kind)


async def sample_target(plan: Plan, url: str, *, track: str = "baseline", count: int,
                        duration: float, pacing: Pacing, auth_headers: dict[str, str],
                        endpoints: list[Endpoint] | None = None,
                        session: aiohttp.ClientSession | None = None) -> dict[str, Sample]:
    """Probe each endpoint of ``url`` up to ``count`` times within ``duration`` seconds.

    Endpoints are probed side by side, each one probe at a time, paced by ``pacing``. A probe
    still running at the deadline finishes (it is bounded by its timeout).
    """
    eps = list(endpoints if endpoints is not None else plan.endpoints)
    pacing.check(count * len(eps))
    own = session is None
    session = session or new_session(max(1, len(eps)), pacing.endpoint_gap or 1.0)
    clock = _Clock(pacing.global_gap)
    deadline = time.monotonic() + duration
    out = {ep.name: Sample(ep) for ep in eps}

    async def one_endpoint(ep: Endpoint) -> None:
        req = build_request(track, url, ep, auth_headers, plan.probe.timeout)
        for i in range(count):
            if time.monotonic() >= deadline:
                return
            started = time.monotonic()
            await clock.wait_turn()
            result = await probe(session, req, req.timeout, plan.probe.max_body_bytes)
            out[ep.name].answers.append(answer_of(req, result))
            if i + 1 < count:
                wait = started + pacing.endpoint_gap - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))

    try:
        await asyncio.gather(*(one_endpoint(ep) for ep in eps))
    finally:
        if own:
            await session.close()
    return out
