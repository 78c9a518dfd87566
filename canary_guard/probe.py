"""Perform one HTTP probe: send the endpoint's request, read a bounded body, time it.

One ``aiohttp.ClientSession`` with one ``TCPConnector`` serves every probe, so connections
to a target are kept alive and reused. aiohttp, not httpx: measured on this machine it
spends several times less CPU per request (see docs/exporter.md), and the exporter's goal is
to cost no more CPU per probe than blackbox_exporter.

A probe never buffers more than ``max_body_bytes + 1`` bytes: a longer body is cut there and
reported as ``body_too_large`` (the connection is then closed, not reused). Nothing here
logs or keeps the response content: the body goes to the judge and is dropped.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import __version__, contract
from .judge import ProbeResult

if TYPE_CHECKING:
    from .plan import Endpoint

PROJECT_URL = "https://github.com/canary-guard/canary-guard"

# Probes are requests too: they land in the service's own request counters, beside its users'.
# This User-Agent lets the service (and its operators) tell them apart.
USER_AGENT = f"{contract.PROBE_USER_AGENT_PRODUCT}/{__version__} (+{PROJECT_URL})"
MAX_RETRY_AFTER = 300.0  # seconds: a Retry-After longer than this is capped


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """Everything needed to send one endpoint's probe, prepared once at start."""

    track: str
    endpoint: str
    method: str
    url: URL
    headers: CIMultiDictProxy[str]
    body: bytes | None
    required_fields: tuple[str, ...]
    timeout: float  # seconds: the endpoint's own timeout, else the plan's probe.timeout


def build_request(track: str, base_url: str, endpoint: Endpoint, auth_headers: dict[str, str],
                  timeout: float) -> ProbeRequest:
    """A ``ProbeRequest`` from a plan endpoint (``canary_guard.plan.Endpoint``); ``timeout``
    applies unless the endpoint has its own."""
    headers = CIMultiDict({"User-Agent": USER_AGENT, "Accept": "application/json"})
    body = None
    if endpoint.body is not None and endpoint.method not in ("GET", "HEAD"):
        body = json.dumps(endpoint.body, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
    headers.update(endpoint.headers)
    headers.update(auth_headers)
    return ProbeRequest(
        track=track,
        endpoint=endpoint.name,
        method=endpoint.method,
        url=URL(base_url.rstrip("/") + endpoint.path),
        headers=CIMultiDictProxy(headers),
        body=body,
        required_fields=tuple(endpoint.required_fields),
        timeout=endpoint.timeout if endpoint.timeout is not None else timeout,
    )


def new_session(concurrency: int, interval: float) -> aiohttp.ClientSession:
    """The one client session: keep-alive pool sized to the concurrency, no cookies, no env."""
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        limit_per_host=0,
        # keep idle connections a little longer than the probe interval, so that a
        # connection is reused from one probe to the next
        keepalive_timeout=max(15.0, interval * 1.5),
        ttl_dns_cache=300,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),  # the probe's own asyncio.timeout rules
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


async def probe(session: aiohttp.ClientSession, req: ProbeRequest, timeout: float,
                max_body: int) -> ProbeResult:
    """Send ``req`` and return what came back; never raises for network problems."""
    start = time.perf_counter()
    status = None
    try:
        async with asyncio.timeout(timeout):
            async with session.request(req.method, req.url, data=req.body, headers=req.headers,
                                       allow_redirects=False) as resp:
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After")) if status == 429 else None
                length = resp.content_length
                if length is not None and length > max_body:
                    resp.close()  # do not read it, do not reuse the connection
                    return ProbeResult(status, b"", time.perf_counter() - start, "body_too_large",
                                       retry_after)
                body = await _read_bounded(resp.content, max_body)
                duration = time.perf_counter() - start
                if len(body) > max_body:
                    resp.close()
                    return ProbeResult(status, b"", duration, "body_too_large", retry_after)
                return ProbeResult(status, body, duration, None, retry_after)
    except TimeoutError:
        return ProbeResult(status, error="timeout")
    except aiohttp.ClientConnectorCertificateError:
        return ProbeResult(error="tls")
    except aiohttp.ClientConnectorSSLError:
        return ProbeResult(error="tls")
    except aiohttp.ClientConnectorError:
        return ProbeResult(error="connect")
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionResetError,
            BrokenPipeError):
        return ProbeResult(status, error="reset")
    except aiohttp.ClientOSError:
        return ProbeResult(status, error="reset")
    except (aiohttp.ClientError, ValueError):
        # malformed HTTP and the like; the exception text may quote the response: never kept
        return ProbeResult(status, error="other")


async def _read_bounded(content: aiohttp.StreamReader, max_body: int) -> bytes:
    """At most ``max_body + 1`` bytes: enough to know the body is too large, never more."""
    limit = max_body + 1
    first = await content.read(limit)
    if not first or len(first) >= limit:
        return first
    buf = bytearray(first)
    while len(buf) < limit:
        chunk = await content.read(limit - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
