"""Who is told: the plan's ``notify`` section (Slack, e-mail, PagerDuty, generic webhooks).

Each channel becomes an Alertmanager receiver that uses Alertmanager's own integration
(``rules render`` writes them). Secrets never enter the plan: each is named by the path of a
file that Alertmanager reads when it sends (``api_url_file``, ``auth_password_file``,
``routing_key_file``, ``credentials_file``). Alertmanager 0.25 has no ``url_file`` for a
generic webhook, so its URL is in the plan and may carry no secret (no user info, no query
string); the credential goes in ``credentials_file``, sent as a bearer token.

Which alerts go where: every channel takes the severities in its ``severities`` (people:
every severity; PagerDuty: ``critical``). Rollback alerts go to the canary-guard webhook *and*
to people (``continue: true``); page alerts and canary-guard's own alerts (an action failed,
the webhook is down) go to people only.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, field_validator, model_validator

from canary_guard.contract import OWN_ALERT_PREFIX

from .base import Model, Name

Severity = Literal["critical", "warning", "info", "page"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

# Fields a user might reach for that would put a secret into the plan: the message says which
# file field to use instead.
_SECRET_FIELDS = {
    "api_url": "api_url_file", "webhook_url": "api_url_file", "auth_password": "auth_password_file",
    "password": "auth_password_file", "routing_key": "routing_key_file",
    "service_key": "routing_key_file", "token": "credentials_file", "credentials": "credentials_file",
}
_EMAIL_RE = re.compile(r"^[^@\s<>,\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_HOSTPORT_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")


def _no_inline_secrets(data: Any) -> Any:
    if isinstance(data, dict):
        for key, instead in _SECRET_FIELDS.items():
            if key in data:
                raise ValueError(f"{key}: secrets are never written in the plan; put it in a file "
                                 f"that Alertmanager can read and name that file in {instead}")
    return data


def _secret_path(value: str | None) -> str | None:
    """A file path for Alertmanager to read; refuses what looks like the secret itself."""
    if value is None:
        return None
    if "://" in value or value.startswith(("xox", "hooks.")):
        raise ValueError("this looks like the secret itself, not a file path: write the secret to "
                         "a file that Alertmanager can read and give that file's path")
    if not os.path.isabs(value):
        raise ValueError("must be an absolute path (Alertmanager reads the file when it sends)")
    if any(c.isspace() for c in value):
        raise ValueError("must be a path without spaces")
    return value


def _address(v: str) -> str:
    if not _EMAIL_RE.match(v):
        raise ValueError(f"{v!r} is not an e-mail address")
    return v


Address = Annotated[str, AfterValidator(_address)]


class Channel(Model):
    """What every channel has: which severities it is sent, and whether it hears resolutions."""

    severities: list[Severity] = Field(default_factory=lambda: list(get_args(Severity)), min_length=1)
    send_resolved: bool = True

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return _no_inline_secrets(data)


class Slack(Channel):
    channel: str  # "#recoveryos-alerts", "@someone", or a channel ID
    api_url_file: str  # a file holding the incoming-webhook URL (the URL is the secret)
    username: str = "canary-guard"

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if not re.match(r"^([#@][a-z0-9._-]{1,80}|[A-Z0-9]{8,12})$", v):
            raise ValueError("must be #channel (lower case), @user or a channel ID such as C0123ABCD")
        return v

    @field_validator("api_url_file")
    @classmethod
    def _file(cls, v: str) -> str | None:
        return _secret_path(v)


class Email(Channel):
    to: list[Address] = Field(min_length=1)
    from_: Address = Field(alias="from")
    smarthost: str  # host:port of the mail relay
    auth_username: str | None = None
    auth_password_file: str | None = None
    # STARTTLS is required unless the relay is on loopback (a local test relay, say)
    require_tls: bool = True
    tls_ca_file: str | None = None  # CA bundle for the relay's certificate
    tls_server_name: str | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, v: str) -> str:
        if not _HOSTPORT_RE.match(v) or not 0 < int(v.rsplit(":", 1)[1]) < 65536:
            raise ValueError("must be HOST:PORT of the mail relay, e.g. smtp.example.com:587")
        return v

    @field_validator("auth_password_file", "tls_ca_file")
    @classmethod
    def _files(cls, v: str | None) -> str | None:
        return _secret_path(v)

    @model_validator(mode="after")
    def _auth_pair(self) -> Email:
        if bool(self.auth_username) != bool(self.auth_password_file):
            raise ValueError("auth_username and auth_password_file go together (both or neither)")
        return self

    model_config = {**Channel.model_config, "populate_by_name": True}


def _only(severity: Severity) -> list[Severity]:
    return [severity]


class PagerDuty(Channel):
    routing_key_file: str  # a file holding the Events API v2 integration (routing) key
    severities: list[Severity] = Field(default_factory=lambda: _only("critical"), min_length=1)
    url: str | None = None  # Events API endpoint; None: PagerDuty's own

    @field_validator("routing_key_file")
    @classmethod
    def _file(cls, v: str) -> str | None:
        return _secret_path(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _plain_url(v) if v is not None else None


class Webhook(Channel):
    """Any service that takes Alertmanager's webhook JSON (chat-ops bots, ticketing...)."""

    name: Name
    url: str
    credentials_file: str | None = None  # sent as "Authorization: Bearer <contents>"
    max_alerts: int = Field(default=0, ge=0)  # 0: every alert of the group

    @field_validator("credentials_file")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        return _secret_path(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _plain_url(v)


def _plain_url(v: str) -> str:
    """An http(s) URL that carries no secret: Alertmanager 0.25 cannot read a URL from a file."""
    m = re.match(r"^https?://([^/\s?#]+)(/[^\s?#]*)?$", v)
    if not m:
        if re.match(r"^https?://[^/\s]*@", v):
            raise ValueError("must not carry user info (user:password@): put the credential in a "
                             "file and name it in credentials_file")
        if "?" in v or "#" in v:
            raise ValueError("must not carry a query string or fragment: a key in a URL ends up in "
                             "logs; put the credential in credentials_file")
        raise ValueError("must be an http:// or https:// URL")
    if "@" in m.group(1):
        raise ValueError("must not carry user info (user:password@): put the credential in a "
                         "file and name it in credentials_file")
    return v


class Notify(Model):
    """The people (and systems) told about canary-guard's alerts."""

    slack: Slack | None = None
    email: Email | None = None
    pagerduty: PagerDuty | None = None
    webhooks: list[Webhook] = Field(default_factory=list)

    def channels(self) -> list[tuple[str, Channel]]:
        """(receiver suffix, channel), in the order they are routed."""
        out: list[tuple[str, Channel]] = []
        if self.slack:
            out.append(("slack", self.slack))
        if self.email:
            out.append(("email", self.email))
        out += [(f"webhook-{w.name}".replace("_", "-"), w) for w in self.webhooks]
        if self.pagerduty:
            out.append(("pagerduty", self.pagerduty))
        return out

    def secret_files(self) -> list[str]:
        """Every file path that holds a secret (Alertmanager must be able to read them)."""
        out = []
        for _, ch in self.channels():
            for name in ("api_url_file", "auth_password_file", "routing_key_file", "credentials_file"):
                value = getattr(ch, name, None)
                if value:
                    out.append(value)
        return out


def problems(plan: Any) -> list[str]:
    """Checks that span the plan: webhook names unique; reserved alert names."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, w in enumerate(plan.notify.webhooks):
        if w.name in seen:
            out.append(f"notify.webhooks[{i}].name: {w.name!r} repeats notify.webhooks[{seen[w.name]}]")
        seen.setdefault(w.name, i)
    for i, trig in enumerate(plan.triggers):
        if trig.alert.startswith(OWN_ALERT_PREFIX):
            out.append(f"triggers[{i}].alert: names starting with {OWN_ALERT_PREFIX!r} are "
                       "canary-guard's own alerts (they never reach the webhook's actions)")
    return out

