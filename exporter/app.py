"""Wire the exporter together and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import zlib
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from canary_guard import __version__
from canary_guard.probe import build_request, new_session

from .metrics import Metrics
from .scheduler import Job, Scheduler
from .server import create_app

if TYPE_CHECKING:
    from canary_guard.plan import Plan

log = logging.getLogger("canary_guard.exporter")


def in_shard(track: str, endpoint: str, shard: tuple[int, int] | None) -> bool:
    """Whether this replica probes (track, endpoint): a hash that is the same in every process
    and every release (crc32, not Python's salted hash), so N replicas split the pairs."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(f"{track}/{endpoint}".encode()) % n == k


PREFLIGHT_PROBES = 2  # per endpoint of the baseline, at start-up


async def preflight_baseline(plan: Plan, targets: dict[str, str], auth_headers: dict[str, str],
                             session: aiohttp.ClientSession, timeout: float,
                             shard: tuple[int, int] | None) -> None:
    """Run every content check of the plan against the baseline track, once, at start-up.

    A check that already fails on the baseline is a bug in the plan: every canary would breach
    it too. Each one is logged loudly, naming the endpoint and field; the exporter probes on
    regardless (the plan may be right and the baseline broken).
    """
    from canary_guard import preflight
    from canary_guard.sampling import Pacing, SamplingError, sample_target

    base = plan.baseline_track()
    if base is None or base not in targets:
        log.info("preflight skipped: no baseline track to check the plan against")
        return
    eps = [e for e in plan.endpoints if in_shard(base, e.name, shard)]
    effective = plan.model_copy(update={"probe": plan.probe.model_copy(update={"timeout": timeout})})
    try:
        samples = await sample_target(
            effective, targets[base], track=base, count=PREFLIGHT_PROBES, duration=60.0,
            pacing=Pacing.from_plan(plan), auth_headers=auth_headers, endpoints=eps, session=session)
    except SamplingError as err:
        log.warning("preflight skipped", extra={"track": base, "problem": str(err)})
        return
    except Exception:  # a preflight must never take the exporter down
        log.exception("preflight failed unexpectedly", extra={"track": base})
        return
    findings = preflight.check(effective, samples)
    for f in findings:
        fails = f.severity == preflight.FAIL
        log.log(logging.ERROR if fails else logging.WARNING,
                "PREFLIGHT: the baseline already fails a check of the plan" if fails else
                "PREFLIGHT: the baseline comes close to a limit of the plan",
                extra={"track": base, "endpoint": f.endpoint, "field": f.field or "",
                       "problem": f.problem})
    failing = sum(f.severity == preflight.FAIL for f in findings)
    if failing:
        log.error("PREFLIGHT FAILED: checks of the plan fail on the baseline track; the same checks "
                  "will fail on every canary: fix the plan (canary-guard plan check --against URL, "
                  "canary-guard plan learn)", extra={"track": base, "failing": failing,
                                                     "url": targets[base]})
    else:
        log.info("preflight passed: every check of the plan holds on the baseline", extra={
            "track": base, "endpoints": len(eps), "warnings": len(findings)})


async def serve(plan: Plan, targets: dict[str, str], auth_headers: dict[str, str], host: str, port: int,
                interval: float, timeout: float, shard: tuple[int, int] | None = None) -> int:
    metrics = Metrics(__version__, plan.name)
    jobs = [
        Job(build_request(track, url, ep, auth_headers, timeout), metrics.add(track, ep.name))
        for track, url in targets.items()
        for ep in plan.endpoints
        if in_shard(track, ep.name, shard)
    ]
    concurrency = plan.probe.concurrency
    session = new_session(concurrency, interval)
    scheduler = Scheduler(jobs, session, metrics, interval=interval,
                          max_body=plan.probe.max_body_bytes, concurrency=concurrency)
    runner = web.AppRunner(create_app(metrics, scheduler, plan.name, __version__), access_log=None,
                           handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
    except OSError:
        await runner.cleanup()
        await session.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheduler.start()
    checks = asyncio.get_running_loop().create_task(
        preflight_baseline(plan, targets, auth_headers, session, timeout, shard))
    log.info("exporter started", extra={
        "listen": f"{host}:{port}", "plan": plan.name, "targets": ",".join(targets),
        "endpoints": len(plan.endpoints), "probed_pairs": len(jobs),
        "shard": f"{shard[0]}/{shard[1]}" if shard else "all", "interval": interval, "timeout": timeout,
        "concurrency": concurrency})
    await stop.wait()
    checks.cancel()
    log.info("stopping: finishing in-flight probes")
    await scheduler.stop(grace=min(max(j.req.timeout for j in jobs) if jobs else timeout, 5.0))
    await session.close()
    await runner.cleanup()
    log.info("stopped", extra={"probes_completed": scheduler.probes})
    return 0
