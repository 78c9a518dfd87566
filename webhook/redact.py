"""Keep secrets out of records, pages and logs.

What the webhook writes down about an action (its URL, the answer of a failed call) can carry
a secret: user info in a URL, a key in a query string, a token echoed back in an error body.
Everything that reaches the store, a page or a log line goes through here first:

- :func:`url`: user info and the value of every query parameter become ``***``;
- :func:`text`: a response body or command output, cut to ``limit`` characters, with URLs
  redacted, ``Authorization``/``Bearer``/``Basic`` credentials, ``key=value`` pairs whose key
  names a secret, and every known secret value (the tokens the webhook holds) replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
BODY_LIMIT = 500

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
_SECRET_WORDS = r"(?:pass(?:word|wd)?|secret|token|api[_-]?key|apikey|key|auth|authorization|" \
                r"credential|credentials|session|cookie|signature|sig|access[_-]?token|routing[_-]?key)"
# "Authorization: Bearer abc", "Bearer abc", "Basic abc=="
_AUTH_HEADER = re.compile(r"(?i)\b(authorization|x-api-key|api-key|cookie|set-cookie)(\s*[:=]\s*)[^\r\n,;]+")
_SCHEME = re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{4,}")
# key=value, "key": "value", key: value
_PAIR = re.compile(r"(?i)([\"']?\b[\w.-]*" + _SECRET_WORDS
                   + r"[\w.-]*[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&}]+)")


def url(value: str) -> str:
    """The URL with user info and every query value masked (``https://***@host/p?key=***``)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        query = "&".join(f"{k}={MASK}" if v or "=" in query else k
                         for k, v in parse_qsl(query, keep_blank_values=True)) or MASK
    fragment = MASK if parts.fragment else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def text(value: str, secrets: Iterable[str] = (), limit: int | None = BODY_LIMIT) -> str:
    """Free text (a response body, command output, an error) with every secret masked, cut."""
    out = value
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        out = out.replace(s, MASK)
    out = _URL.sub(lambda m: url(m.group(0)), out)
    out = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + MASK, out)
    out = _SCHEME.sub(lambda m: m.group(1) + m.group(2) + MASK, out)
    out = _PAIR.sub(lambda m: m.group(1) + MASK, out)
    if limit is not None and len(out) > limit:
        out = out[:limit] + f"... ({len(value) - limit} more characters cut)"
    return out


def value(obj: Any, secrets: Iterable[str] = ()) -> Any:  # any JSON-able value
    """A recorded command (argv, or method/URL/body) with URLs and secret values masked."""
    secrets = list(secrets)
    if isinstance(obj, str):
        return text(obj, secrets, limit=None)
    if isinstance(obj, list):
        return [value(v, secrets) for v in obj]
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and re.fullmatch(r"(?i)[\w.-]*" + _SECRET_WORDS + r"[\w.-]*", k) \
                    and isinstance(v, str):
                out[k] = MASK
            else:
                out[k] = value(v, secrets)
        return out
    return obj
