"""``canary-guard traffic``: simulated users, split between the tracks as an ingress would.

An open-loop generator: requests leave at a steady rate whatever the answers do (users do not
wait for a slow canary before the next one arrives), each to one track drawn by weight (the
canary's share: 5% in phase 1) and one endpoint drawn uniformly (or from ``--endpoint``), with
the plan's method, path, body and API key. Bounded in time (``--duration``), in count
(``--requests``) and in requests in flight (``--concurrency``: when that many are waiting, the
next one is dropped and counted, never queued). Its User-Agent says ``canary-guard-traffic``:
these are the "users" the traffic triggers judge, not probes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from canary_guard import __version__
from canary_guard.cli import add_plan_argument, plan_from_args
from canary_guard.durations import format_duration, parse_duration
from canary_guard.plan import Endpoint, Plan

if TYPE_CHECKING:  # aiohttp is imported when traffic is sent
    import aiohttp

log = logging.getLogger("traffic")

USER_AGENT = f"canary-guard-traffic/{__version__}"
DEFAULT_RATE = 20.0
DEFAULT_DURATION = 600.0
MAX_RATE = 5000.0  # one process on a shared machine: beyond this it measures itself
REPORT_EVERY = 10.0


@dataclass
class Tally:
    """What was sent to one track and how it was answered."""

    sent: int = 0
    dropped: int = 0  # --concurrency requests were already in flight
    statuses: dict[str, int] = field(default_factory=dict)  # "200", "503", "timeout", "connect"

    def count(self, outcome: str) -> None:
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1

    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if not s.isdigit() or int(s) >= 400)

    def to_json(self) -> dict:
        return {"sent": self.sent, "dropped": self.dropped, "errors": self.errors(),
                "statuses": dict(sorted(self.statuses.items()))}


@dataclass(frozen=True)
class Split:
    """Each track's share of the requests (fractions that add up to 1)."""

    shares: dict[str, float]

    @classmethod
    def parse(cls, tracks: list[str], items: list[str], default: dict[str, float]) -> Split:
        """``NAME=PERCENT`` items; the tracks not named share what is left equally."""
        given: dict[str, float] = {}
        for item in items or [f"{k}={v:g}" for k, v in default.items()]:
            name, sep, pct = item.partition("=")
            if not sep or name not in tracks:
                raise ValueError(f"--split {item!r}: expected TRACK=PERCENT with a track of the plan "
                                 f"({', '.join(tracks)})")
            try:
                value = float(pct.removesuffix("%"))
            except ValueError:
                raise ValueError(f"--split {item!r}: {pct!r} is not a percentage") from None
            if not 0 <= value <= 100:
                raise ValueError(f"--split {item!r}: the percentage must be between 0 and 100")
            given[name] = value / 100
        rest = [t for t in tracks if t not in given]
        left = 1 - sum(given.values())
        if left < -1e-9:
            raise ValueError(f"--split: the shares add up to {sum(given.values()) * 100:g}% (> 100%)")
        if not rest and abs(left) > 1e-9:
            raise ValueError(f"--split: the shares add up to {sum(given.values()) * 100:g}%, not 100%")
        shares = {t: given.get(t, max(left, 0) / len(rest) if rest else 0.0) for t in tracks}
        return cls({t: s for t, s in shares.items() if s > 0})

    def pick(self, rng: random.Random) -> str:
        return rng.choices(list(self.shares), weights=list(self.shares.values()))[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_argument(parser)
    parser.add_argument("--target", action="append", default=[], metavar="NAME=URL",
                        help="where a track answers (repeatable; default: the plan's targets)")
    parser.add_argument("--split", action="append", default=[], metavar="TRACK=PERCENT",
                        help="a track's share of the requests, e.g. canary=5 (repeatable; the tracks "
                             "not named share the rest; default: the guarded tracks get the first "
                             "phase's traffic_percent)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, metavar="R",
                        help=f"requests per second, all tracks together (default {DEFAULT_RATE:g})")
    parser.add_argument("--endpoint", action="append", default=[], metavar="NAME",
                        help="send only to this plan endpoint (repeatable; default: every endpoint)")
    parser.add_argument("--duration", default=format_duration(DEFAULT_DURATION), metavar="D",
                        help=f"stop after this long (default {format_duration(DEFAULT_DURATION)})")
    parser.add_argument("--requests", type=int, default=None, metavar="N",
                        help="stop after sending this many requests (default: no count limit)")
    parser.add_argument("--concurrency", type=int, default=256, metavar="N",
                        help="requests in flight at most; beyond, a request is dropped (default 256)")
    parser.add_argument("--timeout", default="10s", metavar="D",
                        help="give up on an answer after this long (default 10s)")
    parser.add_argument("--seed", type=int, default=None, help="seed the track and endpoint draws")


def default_split(plan: Plan) -> dict[str, float]:
    share = plan.phases[0].traffic_percent if plan.phases else 5.0
    guarded = plan.guarded_tracks()
    return {t: share / len(guarded) for t in guarded} if len(guarded) < len(plan.targets) else {}


def _fail(message: str) -> int:
    print(f"canary-guard traffic: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    urls = {t.name: t.url for t in plan.targets}
    for item in args.target:
        name, sep, url = item.partition("=")
        if not sep or name not in urls:
            return _fail(f"--target {item!r}: expected NAME=URL with a track of the plan "
                         f"({', '.join(urls)})")
        urls[name] = url.rstrip("/")
    try:
        split = Split.parse(list(urls), args.split, default_split(plan))
        duration = parse_duration(args.duration)
        timeout = parse_duration(args.timeout)
    except ValueError as err:
        return _fail(str(err))
    if not 0 < args.rate <= MAX_RATE:
        return _fail(f"--rate: must be above 0 and at most {MAX_RATE:g} requests per second")
    if duration <= 0 or timeout <= 0:
        return _fail("--duration and --timeout must be above 0")
    if args.requests is not None and args.requests < 1:
        return _fail("--requests: must be at least 1")
    if args.concurrency < 1:
        return _fail("--concurrency: must be at least 1")
    known = {e.name: e for e in plan.endpoints}
    unknown = [n for n in args.endpoint if n not in known]
    if unknown:
        return _fail(f"--endpoint: no endpoint named {', '.join(unknown)} (known: {', '.join(known)})")
    endpoints = [known[n] for n in dict.fromkeys(args.endpoint)] or list(plan.endpoints)
    gen = Generator(urls, split, endpoints, plan.auth.headers(), rate=args.rate, duration=duration,
                    max_requests=args.requests, concurrency=args.concurrency, timeout=timeout,
                    seed=args.seed)
    log.info("traffic starting", extra={
        "rate": args.rate, "split": ",".join(f"{t}={s * 100:g}%" for t, s in split.shares.items()),
        "endpoints": len(endpoints), "duration": format_duration(duration)})
    tallies = asyncio.run(gen.run())
    print(json.dumps({t: x.to_json() for t, x in tallies.items()}, indent=2))
    return 0


class Generator:
    def __init__(self, urls: dict[str, str], split: Split, endpoints: list, auth_headers: dict[str, str],
                 *, rate: float, duration: float, max_requests: int | None = None,
                 concurrency: int = 256, timeout: float = 10.0, seed: int | None = None):
        self.urls, self.split, self.endpoints = urls, split, endpoints
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **auth_headers}
        self.rate, self.duration, self.max_requests = rate, duration, max_requests
        self.concurrency, self.timeout = concurrency, timeout
        self.rng = random.Random(seed)
        self.tallies = {t: Tally() for t in split.shares}
        self.bodies = {e.name: (None if e.body is None or e.method in ("GET", "HEAD")
                                else json.dumps(e.body, separators=(",", ":")).encode())
                       for e in endpoints}

    async def _send(self, session: aiohttp.ClientSession, track: str, ep: Endpoint) -> None:
        import aiohttp

        tally = self.tallies[track]
        body = self.bodies[ep.name]
        headers = dict(self.headers, **ep.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with session.request(ep.method, self.urls[track] + ep.path, data=body,
                                       headers=headers) as resp:
                await resp.read()
                tally.count(str(resp.status))
        except TimeoutError:
            tally.count("timeout")
        except aiohttp.ClientConnectorError:
            tally.count("connect")
        except (aiohttp.ClientError, ConnectionError):
            tally.count("reset")

    async def run(self) -> dict[str, Tally]:
        import aiohttp

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        inflight: set[asyncio.Task] = set()
        started = time.monotonic()
        next_report = started + REPORT_EVERY
        sent = 0
        base, paced = started, 0  # the schedule: request n leaves at base + n / rate
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         skip_auto_headers=("User-Agent",)) as session:
            while not stop.is_set():
                now = time.monotonic()
                if now - started >= self.duration or (self.max_requests and sent >= self.max_requests):
                    break
                due = base + paced / self.rate  # open loop: answers never delay the schedule
                if now - due > 1.0:  # stalled (a busy machine): resume the pace, no burst
                    base, paced, due = now, 0, now
                if due > now:
                    try:
                        await asyncio.wait_for(stop.wait(), min(due - now, 1.0))
                    except TimeoutError:
                        pass
                    continue
                track = self.split.pick(self.rng)
                ep = self.endpoints[self.rng.randrange(len(self.endpoints))]
                sent += 1
                paced += 1
                tally = self.tallies[track]
                tally.sent += 1
                if len(inflight) >= self.concurrency:
                    tally.dropped += 1
                    continue
                task = asyncio.create_task(self._send(session, track, ep))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                if now >= next_report:
                    next_report = now + REPORT_EVERY
                    log.info("traffic", extra={t: f"{x.sent} sent, {x.errors()} errors"
                                               for t, x in self.tallies.items()})
            if inflight:
                await asyncio.wait(inflight, timeout=self.timeout)
        log.info("traffic stopped", extra={t: f"{x.sent} sent, {x.errors()} errors, {x.dropped} dropped"
                                           for t, x in self.tallies.items()})
        return self.tallies
