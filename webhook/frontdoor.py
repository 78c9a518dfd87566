"""The front door: waitress, hardened so that slow or idle connections cannot starve it.

waitress reads every request (headers and body) in its event loop before a thread sees it,
so a slow client never holds a worker thread; what it can hold is a connection slot. Stock
waitress has no deadline on reading a request (a client sending a header byte every 8 s keeps
its slot forever), watches sockets with select() (which fails past 1,024 descriptors), and
stops accepting everyone at ``connection_limit``. Here:

- a request's headers must arrive within ``header_timeout`` of its first byte (of the
  connection being accepted, for a connection's first request), and its body within
  ``body_timeout`` after that; a connection idle between requests is closed after
  ``idle_timeout`` (longer than Alertmanager's 90 s keep-alive, so it closes first);
- one client address holds at most ``max_per_client`` connections; more are closed at once,
  so one misbehaving host cannot take the slots other clients (Alertmanager) need;
- the sockets are watched with poll(), the connection limit is raised to ``connection_limit``
  and the process's descriptor limit with it.
"""

from __future__ import annotations

import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from .config import BODY_TIMEOUT, CONNECTION_LIMIT, HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_PER_CLIENT

log = logging.getLogger("webhook.frontdoor")



class GuardedChannel(HTTPChannel):
    """A waitress channel that remembers when the request it is reading began."""

    request_started: float = 0.0  # 0: no request being read

    def __init__(self, server: GuardedServer, sock: Any, addr: Any, adj: Adjustments, map: Any = None):
        super().__init__(server, sock, addr, adj, map=map)
        self.client = addr[0] if isinstance(addr, tuple) else str(addr)
        self.request_started = self.creation_time  # the first request is due from the accept

    def received(self, data: bytes) -> bool:
        before = self.request
        result = super().received(data)
        if self.request is None:
            self.request_started = 0.0
        elif self.request is not before:
            self.request_started = time.time()
        return result

    def service(self) -> None:
        super().service()
        if self.request is None:
            self.request_started = 0.0

    def overdue(self, now: float, header_timeout: float, body_timeout: float) -> str | None:
        """Why this connection must go now, or None."""
        if not self.request_started or self.requests:
            return None  # idle between requests (idle_timeout), or a request being served
        elapsed = now - self.request_started
        request = self.request
        if request is None or not request.headers_finished:
            return "headers" if elapsed > header_timeout else None
        return "body" if elapsed > header_timeout + body_timeout else None

    def del_channel(self, map: Any = None) -> None:
        server = self.server
        assert isinstance(server, GuardedServer)  # channel_class of GuardedServer only
        # types-waitress: dispatcher._fileno exists, active_channels maps fileno -> channel
        if self._fileno in server.active_channels:  # type: ignore[attr-defined, operator]
            server.forget(self.client)
        super().del_channel(map)


class GuardedServer(TcpWSGIServer):
    channel_class = GuardedChannel

    def __init__(self, application: Callable[..., Any], adj: Adjustments, header_timeout: float,
                 body_timeout: float, max_per_client: int, dispatcher: ThreadedTaskDispatcher):
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        self.max_per_client = max_per_client
        self.per_client: Counter[str] = Counter()
        self.closed_for: Counter[str] = Counter()  # why connections were closed early, for the log
        super().__init__(application, map={}, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])  # type: ignore[arg-type]  # types-waitress: listen holds sockinfo tuples

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        conn, addr = accepted
        client = addr[0]
        if self.per_client[client] >= self.max_per_client:
            self.closed_for["per_client_cap"] += 1
            try:
                conn.close()
            except OSError:
                pass
            return
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return
        self.per_client[client] += 1
        # types-waitress omits wasyncore.dispatcher's _map (the socket map given to __init__)
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)  # type: ignore[attr-defined]

    def forget(self, client: str) -> None:
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]

    def maintenance(self, now: float) -> None:
        # idle connections (channel_timeout); types-waitress: now is time.time(), a float
        super().maintenance(now)  # type: ignore[arg-type]
        # types-waitress: active_channels is a dict of fileno -> channel, not one channel
        channels: list[GuardedChannel] = list(self.active_channels.values())  # type: ignore[attr-defined]
        for channel in channels:
            why = channel.overdue(now, self.header_timeout, self.body_timeout)
            if why and not channel.will_close:
                self.closed_for[why] += 1
                channel.will_close = True
                channel.request = None  # nothing half-read is ever served
        if self.closed_for:
            log.warning("closed connections that were too slow or too many",
                        extra=dict(self.closed_for))
            self.closed_for.clear()


def raise_descriptor_limit(want: int) -> int:
    """Raise this process's open-file limit towards ``want`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def create_front_door(app: Callable[..., Any], host: str, port: int, threads: int, max_body: int,
                      header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT,
                      idle_timeout: float = IDLE_TIMEOUT, max_per_client: int = MAX_PER_CLIENT,
                      connection_limit: int = CONNECTION_LIMIT) -> GuardedServer:
    fds = raise_descriptor_limit(connection_limit + threads + 256)
    limit = min(connection_limit, max(64, fds - threads - 256))
    adj = Adjustments(
        host=host, port=port, threads=threads, ident="canary-guard",
        # The receiver answers 413 with a JSON error up to 4x the limit; beyond that waitress does.
        max_request_body_size=4 * max_body, connection_limit=limit, backlog=2048,
        channel_timeout=idle_timeout, cleanup_interval=1, asyncore_use_poll=True,
        clear_untrusted_proxy_headers=True,
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(threads)
    return GuardedServer(app, adj, header_timeout, body_timeout, max_per_client, dispatcher)
