"""HTTP side of the exporter: ``/metrics``, ``/healthz`` and ``/`` on aiohttp.web.

It runs in the same event loop as the probes. ``/metrics`` negotiates the format and gzip
(``exposition.py``) and streams the body in pieces, compressing each as it goes, with the
probes running between pieces: a scrape of 10,000 endpoints costs the loop about a hundred
milliseconds in slices of about one, and no copy of the whole body is ever held.
"""

from __future__ import annotations

import asyncio
import html
import time
import zlib

from aiohttp import web

from .exposition import CONTENT_TYPES, GZIP, GZIP_LEVEL, IDENTITY, accepts_gzip, chunks, negotiate
from .metrics import Metrics
from .scheduler import Scheduler


def create_app(metrics: Metrics, scheduler: Scheduler, plan_name: str, version: str) -> web.Application:
    app = web.Application()
    started = time.time()

    async def metrics_handler(request: web.Request) -> web.StreamResponse:
        fmt = negotiate(request.headers.get("Accept"))
        gzipped = accepts_gzip(request.headers.get("Accept-Encoding"))
        metrics.scrapes[(fmt, GZIP if gzipped else IDENTITY)] += 1
        headers = {"Content-Type": CONTENT_TYPES[fmt], "Vary": "Accept, Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if gzipped else None
        try:
            for chunk in chunks(metrics, fmt):
                data = compressor.compress(chunk) if compressor else chunk
                if data:
                    await response.write(data)  # waits while the client is behind
                # let probes' callbacks run between pieces: a scrape never holds the loop for
                # more than one piece (~1 ms), so it cannot inflate measured probe latencies
                await asyncio.sleep(0)
            if compressor:
                await response.write(compressor.flush())
            await response.write_eof()
        except ConnectionResetError:
            pass  # the scraper went away (timeout, restart): nothing to finish
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok",
            "plan": plan_name,
            "version": version,
            "series": len(metrics.series),
            "probes_completed": scheduler.probes,
            "inflight": metrics.inflight,
            "uptime_seconds": round(time.time() - started, 3),
        })

    async def index(request: web.Request) -> web.Response:
        rows = "".join(
            f"<li>{html.escape(s.track)} / {html.escape(s.endpoint)}</li>" for s in metrics.series[:50]
        )
        more = len(metrics.series) - 50
        if more > 0:
            rows += f"<li>... and {more} more</li>"
        page = (
            "<!doctype html><html><head><title>canary-guard exporter</title></head><body>"
            f"<h1>canary-guard exporter</h1><p>plan <code>{html.escape(plan_name)}</code>, "
            f"version {html.escape(version)}</p>"
            '<p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a></p>'
            f"<h2>Probed</h2><ul>{rows}</ul></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    return app
