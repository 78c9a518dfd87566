"""The front door over real sockets: slow, idle and too many connections cannot starve it.

The webhook runs as ``canary-guard webhook`` with short deadlines; the misbehaving clients come
from 127.0.1.x and 127.0.0.3, the real notifications (Alertmanager) from 127.0.0.2.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from webhook_helpers import TOKEN, alert, notification, plan_data, start_webhook, write_plan

DEADLINES = ("--header-timeout", "1", "--body-timeout", "1", "--max-connections-per-client", "4")


def _webhook(procs, tmp_path, *extra):
    url, proc = start_webhook(procs, tmp_path, write_plan(tmp_path, plan_data()), tmp_path / "w.db",
                              *DEADLINES, *extra)
    return int(url.rsplit(":", 1)[1]), proc


def notify(port: int, k: int, source: str = "127.0.0.2") -> float:
    """POST one notification as Alertmanager would; returns seconds to the 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0))
    body = json.dumps(notification(alert(action="page", fingerprint=f"fd{k}", alertname=f"A{k}")))
    t0 = time.monotonic()
    try:
        conn.request("POST", "/alerts", body=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                          "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        return time.monotonic() - t0
    finally:
        conn.close()


def connect(port: int, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.settimeout(10)
    return s


def closed_within(s: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``s`` (sending ``trickle`` every 0.3 s meanwhile), or None."""
    t0 = time.monotonic()
    s.settimeout(0.3)
    while time.monotonic() - t0 < seconds:
        try:
            if trickle:
                s.sendall(trickle)
            if s.recv(1024) == b"":
                return time.monotonic() - t0
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - t0
    return None


def test_slow_headers_idle_and_slow_bodies_are_cut_off(procs, tmp_path):
    port, _ = _webhook(procs, tmp_path)
    slow = connect(port, "127.0.1.1")
    slow.sendall(b"POST /alerts HTTP/1.1\r\nX-Slow: ")
    idle = connect(port, "127.0.1.2")
    body = connect(port, "127.0.1.3")
    body.sendall(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 5000\r\n\r\n{")
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda args: closed_within(*args),
                                [(slow, 8, b"a"), (idle, 8, b""), (body, 8, b" ")]))
    # header deadline 1 s, body deadline 1 s more, checked every second
    assert results[0] is not None and results[0] < 4, results
    assert results[1] is not None and results[1] < 4, results
    assert results[2] is not None and results[2] < 5, results
    assert notify(port, 1) < 5
    assert "closed connections that were too slow or too many" in procs.log("webhook")


def test_one_client_cannot_take_every_connection(procs, tmp_path):
    port, _ = _webhook(procs, tmp_path, "--header-timeout", "30")
    held = [connect(port, "127.0.0.3") for _ in range(4)]
    for s in held:
        s.sendall(b"POST /alerts HTTP/1.1\r\n")
    extra = connect(port, "127.0.0.3")
    assert closed_within(extra, 3) is not None  # the fifth is closed at once
    assert closed_within(held[0], 1.5) is None  # the four it holds stay (until their deadline)
    assert notify(port, 2) < 5  # another client is served


def test_hundreds_of_slow_connections_do_not_delay_a_notification(procs, tmp_path):
    port, _ = _webhook(procs, tmp_path, "--header-timeout", "30", "--max-connections-per-client", "100")
    socks = []
    try:
        for k in range(400):  # more than stock waitress's select() could watch with the rest
            s = connect(port, f"127.0.1.{10 + k % 8}")
            s.sendall(b"POST /alerts HTTP/1.1\r\nX-Slow: a")
            socks.append(s)
        waits = [notify(port, 100 + k) for k in range(10)]
    finally:
        for s in socks:
            s.close()
    assert max(waits) < 5, waits  # a generous deadline on a shared machine; bench/ measures it
