"""Wire the exporter together and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import zlib

from aiohttp import web

from canary_guard import __version__

from .metrics import Metrics
from .probe import build_request, new_session
from .scheduler import Job, Scheduler
from .server import create_app

log = logging.getLogger("canary_guard.exporter")


def in_shard(track: str, endpoint: str, shard: tuple[int, int] | None) -> bool:
    """Whether this replica probes (track, endpoint): a hash that is the same in every process
    and every release (crc32, not Python's salted hash), so N replicas split the pairs."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(f"{track}/{endpoint}".encode()) % n == k


async def serve(plan, targets: dict[str, str], auth_headers: dict[str, str], host: str, port: int,
                interval: float, timeout: float, shard: tuple[int, int] | None = None) -> int:
    metrics = Metrics(__version__, plan.name)
    jobs = [
        Job(build_request(track, url, ep, auth_headers), metrics.add(track, ep.name))
        for track, url in targets.items()
        for ep in plan.endpoints
        if in_shard(track, ep.name, shard)
    ]
    concurrency = plan.probe.concurrency
    session = new_session(concurrency, interval)
    scheduler = Scheduler(jobs, session, metrics, interval=interval, timeout=timeout,
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
    log.info("exporter started", extra={
        "listen": f"{host}:{port}", "plan": plan.name, "targets": ",".join(targets),
        "endpoints": len(plan.endpoints), "probed_pairs": len(jobs),
        "shard": f"{shard[0]}/{shard[1]}" if shard else "all", "interval": interval, "timeout": timeout,
        "concurrency": concurrency})
    await stop.wait()
    log.info("stopping: finishing in-flight probes")
    await scheduler.stop(grace=min(timeout, 5.0))
    await session.close()
    await runner.cleanup()
    log.info("stopped", extra={"probes_completed": scheduler.probes})
    return 0
