"""The Alertmanager webhook notification (payload version 4) and its validation.

Alertmanager POSTs one JSON object per notification::

    {"version": "4", "groupKey": "...", "truncatedAlerts": 0, "status": "firing",
     "receiver": "...", "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "...",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "...", "endsAt": "...", "generatorURL": "...",
                 "fingerprint": "..."}]}

Unknown fields are tolerated (newer Alertmanagers add some); anything that is not such an
object is rejected with a :class:`PayloadError` whose message names the offending field.
Validation is hand-written on purpose: it runs on every request and must stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from canary_guard.contract import OWN_ALERT_PREFIX

STATUSES = ("firing", "resolved")
MAX_ALERTS = 1000
# RFC 3339 as Alertmanager writes it (Go's time.Time JSON): up to nanoseconds, Z or offset.
_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


class PayloadError(ValueError):
    """Not an Alertmanager notification; ``error`` is the machine-readable class."""

    def __init__(self, message: str, error: str = "invalid_notification"):
        super().__init__(message)
        self.error = error


@dataclass(frozen=True, slots=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str
    fingerprint_derived: bool = False  # True when the payload had none (hand-made payloads)

    @property
    def action(self) -> str | None:
        # canary-guard's own alerts (CanaryGuardActionFailed...) name the action that failed:
        # never a request to run it again
        if self.labels.get("alertname", "").startswith(OWN_ALERT_PREFIX):
            return None
        return self.labels.get("action")

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def endpoint(self) -> str | None:
        return self.labels.get("endpoint")

    @property
    def track(self) -> str | None:
        return self.labels.get("track")


@dataclass(frozen=True, slots=True)
class Notification:
    status: str
    receiver: str
    group_key: str
    alerts: list[Alert]
    version: str = "4"
    external_url: str = ""
    truncated_alerts: int = 0
    group_labels: dict[str, str] = field(default_factory=dict)


def parse(body: bytes) -> tuple[Notification, str]:
    """Decode and validate a request body; returns the notification and the body as text."""
    try:
        # JSON on the wire is UTF-8 (RFC 8259); json.loads would also guess UTF-16 and 32.
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError(f"body is not UTF-8: invalid byte at position {err.start}",
                           "malformed_json") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        # JSONDecodeError is a ValueError; deep nesting recurses.
        raise PayloadError(f"body is not valid JSON: {_short(err)}", "malformed_json") from None
    return validate(data), text


def validate(data: Any) -> Notification:
    if not isinstance(data, dict):
        raise PayloadError(f"(top level): must be a JSON object, got {_kind(data)}")
    version = data.get("version", "4")
    if version != "4":
        raise PayloadError(f"version: {_show(version)} is not supported (Alertmanager webhook "
                           f"payload version \"4\" expected)")
    status = _status(data, "status", "")
    receiver = _opt_str(data, "receiver", "")
    group_key = _opt_str(data, "groupKey", "")
    external_url = _opt_str(data, "externalURL", "")
    truncated = data.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError(f"truncatedAlerts: must be a whole number >= 0, got {_show(truncated)}")
    group_labels = _str_map(data, "groupLabels", "")
    for key in ("commonLabels", "commonAnnotations"):
        _str_map(data, key, "")
    if "alerts" not in data:
        raise PayloadError("alerts: required (the list of alerts in this notification)")
    raw_alerts = data["alerts"]
    if not isinstance(raw_alerts, list):
        raise PayloadError(f"alerts: must be a list, got {_kind(raw_alerts)}")
    if not raw_alerts:
        raise PayloadError("alerts: must hold at least one alert")
    if len(raw_alerts) > MAX_ALERTS:
        raise PayloadError(f"alerts: {len(raw_alerts)} alerts exceed the limit of {MAX_ALERTS}")
    alerts = [_alert(a, f"alerts[{i}]") for i, a in enumerate(raw_alerts)]
    return Notification(status=status, receiver=receiver, group_key=group_key, alerts=alerts,
                        version=version, external_url=external_url, truncated_alerts=truncated,
                        group_labels=group_labels)


def _alert(data: Any, path: str) -> Alert:
    if not isinstance(data, dict):
        raise PayloadError(f"{path}: must be an object, got {_kind(data)}")
    status = _status(data, "status", path)
    if "labels" not in data:
        raise PayloadError(f"{path}.labels: required")
    labels = _str_map(data, "labels", path)
    if not labels:
        raise PayloadError(f"{path}.labels: must not be empty (an alert has at least alertname)")
    annotations = _str_map(data, "annotations", path)
    starts_at = data.get("startsAt")
    if starts_at is None:
        raise PayloadError(f"{path}.startsAt: required (an RFC 3339 time)")
    # The incident key: one instant is one key, however it was written.
    starts_at = normalize_time(starts_at, f"{path}.startsAt")
    ends_at = data.get("endsAt", "")
    if ends_at not in ("", None):
        ends_at = normalize_time(ends_at, f"{path}.endsAt")
    generator_url = _opt_str(data, "generatorURL", path)
    fingerprint = data.get("fingerprint")
    derived = False
    if fingerprint in (None, ""):
        # Alertmanager always sends one; hand-made payloads may not. Same labels, same id.
        canon = json.dumps(labels, sort_keys=True, separators=(",", ":"))
        fingerprint = hashlib.sha256(canon.encode()).hexdigest()[:16]
        derived = True
    elif not isinstance(fingerprint, str) or len(fingerprint) > 128:
        raise PayloadError(f"{path}.fingerprint: must be a string of at most 128 characters")
    else:
        _text(fingerprint, f"{path}.fingerprint")
    return Alert(status=status, labels=labels, annotations=annotations, starts_at=starts_at,
                 ends_at=ends_at or "", generator_url=generator_url, fingerprint=fingerprint,
                 fingerprint_derived=derived)


def _status(data: dict, key: str, path: str) -> str:
    where = f"{path}.{key}" if path else key
    if key not in data:
        raise PayloadError(f"{where}: required (firing or resolved)")
    value = data[key]
    if value not in STATUSES:
        raise PayloadError(f"{where}: must be firing or resolved, got {_show(value)}")
    return value


def _opt_str(data: dict, key: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    where = f"{path}.{key}" if path else key
    if not isinstance(value, str):
        raise PayloadError(f"{where}: must be a string, got {_kind(value)}")
    return _text(value, where)


def _str_map(data: dict, key: str, path: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    where = f"{path}.{key}" if path else key
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: must be an object of strings, got {_kind(value)}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise PayloadError(f"{where}.{_label(k)}: must be a string, got {_kind(v)}")
        # the common case (ASCII, no NUL) costs two flag checks and two scans
        if not (k.isascii() and v.isascii()) or "\x00" in k or "\x00" in v:
            _text(k, f"{where} (a name)")
            _text(v, f"{where}.{_label(k)}")
    return value


def normalize_time(value: Any, where: str) -> str:
    """An RFC 3339 time as one canonical string: UTC, ``Z``, the fraction without trailing
    zeros (Go's RFC3339Nano, which is how Alertmanager writes it). ``12:00:00Z``,
    ``12:00:00.000Z`` and ``14:00:00+02:00`` are the same instant and the same string."""
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise PayloadError(f"{where}: must be an RFC 3339 time such as 2024-05-01T12:00:00Z, "
                           f"got {_show(value)}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        t = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            t -= sign * timedelta(hours=hours, minutes=minutes)
    except (ValueError, OverflowError) as err:
        raise PayloadError(f"{where}: {_show(value)} is not a valid time ({err})") from None
    frac = (frac or "").rstrip("0")
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            + (f".{frac}" if frac else "") + "Z")


def _text(value: str, where: str) -> str:
    """Strings are stored and shown: a lone surrogate (a ``\\ud800`` escape) is not Unicode
    text, and PostgreSQL's text cannot hold a NUL. Both are refused, naming the field."""
    if "\x00" in value:
        raise PayloadError(f"{where}: contains a NUL character (\\u0000), which cannot be stored")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            bad = value[err.start]
            raise PayloadError(f"{where}: contains a lone surrogate (\\u{ord(bad):04x}), which is not "
                               "valid Unicode text") from None
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else _kind(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _label(key: str) -> str:
    return key if len(key) <= 60 else key[:57] + "..."


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) <= 200 else text[:197] + "..."
