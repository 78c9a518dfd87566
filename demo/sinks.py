"""Local stand-ins for the people's channels: a Slack-compatible HTTP sink and an SMTP server.

Alertmanager delivers to them with its own Slack and e-mail integrations, exactly as it would
to Slack and a mail relay; they keep every message in memory so that the demo can print what a
person would read and the tests can check it. Both listen on 127.0.0.1 only.

- :class:`SlackSink` answers ``POST /<anything>`` like a Slack incoming webhook (200 ``ok``) and
  keeps the JSON body (channel, username, attachments with title and text).
- :class:`SmtpSink` is a real SMTP server (aiosmtpd) that can require AUTH with a password, as a
  mail relay does; it keeps each message's envelope, headers and text part.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"

# The relay takes plain-text AUTH on loopback only (a test has no certificate): aiosmtpd warns
# about that on every connection, which says nothing here.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Message:
    """One delivery as a person sees it: where it went, a title and the text."""

    channel: str  # "slack #recoveryos-alerts" or "email engineering@..."
    title: str
    text: str
    received_at: float
    raw: Any = field(default=None, repr=False, compare=False)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()

    def add(self, msg: Message) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float) -> Message | None:
        """The first message (already received or arriving within ``timeout``) that matches."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.messages:
                    if predicate(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def since(self, index: int) -> list[Message]:
        with self._cond:
            return self.messages[index:]


class SlackSink(_Inbox):
    """A Slack-compatible incoming webhook on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                try:
                    data = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"invalid_payload")
                    return
                sink.add(_slack_message(data))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{HOST}:{self.port}/services/canary-guard-demo"
        self._thread = threading.Thread(target=self.server.serve_forever, name="slack-sink", daemon=True)

    def start(self) -> SlackSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _slack_message(data: dict[str, Any]) -> Message:
    parts, titles = [], []
    for att in data.get("attachments") or []:
        if att.get("title"):
            titles.append(att["title"])
        if att.get("text"):
            parts.append(att["text"])
    if data.get("text"):
        parts.insert(0, data["text"])
    return Message(f"slack {data.get('channel', '')}".strip(), " / ".join(titles),
                   "\n".join(parts), time.time(), data)


class SmtpSink(_Inbox):
    """A real SMTP server (aiosmtpd) on 127.0.0.1, optionally requiring AUTH."""

    def __init__(self, port: int = 0, username: str | None = None, password: str | None = None) -> None:
        super().__init__()
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        if port == 0:
            import socket

            with socket.socket() as s:
                s.bind((HOST, 0))
                port = s.getsockname()[1]
        self.port = port
        self.username, self.password = username, password
        self.auth_failures = 0
        sink = self

        class Handler:
            async def handle_DATA(self, server: object, session: object,  # noqa: N802 (aiosmtpd's name)
                                  envelope: Any) -> str:
                sink.add(_email_message(envelope))
                return "250 Message accepted for delivery"

        def authenticator(server: object, session: object, envelope: Any, mechanism: str,
                          auth_data: object) -> AuthResult:
            ok = (username is not None and getattr(auth_data, "login", None) == username.encode()
                  and getattr(auth_data, "password", None) == (password or "").encode())
            if not ok:
                sink.auth_failures += 1
            return AuthResult(success=ok)

        kwargs: dict[str, Any] = {}
        if username is not None:
            # Plain-text AUTH on loopback only (no certificate in a test); a real relay uses TLS.
            # Only PLAIN: Alertmanager's LOGIN expects the literal "Username:" challenge, which
            # aiosmtpd does not send.
            kwargs = {"authenticator": authenticator, "auth_required": True,
                      "auth_require_tls": False, "auth_exclude_mechanism": ["LOGIN"]}
        self.controller = Controller(Handler(), hostname=HOST, port=port, **kwargs)
        self.smarthost = f"{HOST}:{port}"

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def _email_message(envelope: Any) -> Message:
    msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                   policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain", "html"))
    text = part.get_content() if part is not None else ""
    to = ", ".join(envelope.rcpt_tos)
    return Message(f"email {to}", str(msg.get("Subject", "")), text, time.time(),
                   {"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                    "headers": dict(msg.items())})
