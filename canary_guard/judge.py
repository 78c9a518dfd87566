"""Judge one probe: exactly one outcome, plus the kinds of PII found in the body.

Outcomes: ``success``; ``error`` with a reason from ``ERROR_REASONS``; ``null`` (a 2xx whose
body is empty, JSON ``null``, or lacks a required field); ``disabled`` (the 503 of a feature
that has been switched off: not an error, so alerts resolve after a feature-flag rollback).

PII detection is independent of the outcome and looks for *unredacted* values only: an
e-mail address, a US social security number, a phone number, a Luhn-valid card number. The
service's redaction markers (``[EMAIL_REDACTED]``) never match, and neither do ids, UUIDs,
ISO timestamps, epoch numbers or arrays of floats: every pattern refuses to start or end in
the middle of a word, a number or a decimal fraction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the wire gave back: a status and a bounded body, or a transport error reason."""

    status: int | None = None           # None: no response (see error)
    body: bytes = b""
    duration: float | None = None       # seconds to the complete (bounded) response
    error: str | None = None            # transport-level reason when there is no usable response
    retry_after: float | None = None    # seconds, from a 429's Retry-After


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    outcome: str                        # one of OUTCOMES
    reason: str | None = None           # one of ERROR_REASONS when outcome == "error"
    status: int | None = None
    duration: float | None = None       # observed into the histogram when not None
    pii: tuple[str, ...] = ()           # kinds found, each at most once


# -- outcome ------------------------------------------------------------------------------

_DISABLED_RE = re.compile(r"\b(not enabled|disabled|feature flag|feature is off|turned off)\b", re.I)


_NOT_JSON = NOT_JSON = object()  # what parse_body returns for a body that is not JSON


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def judge(result: ProbeResult, required_fields: tuple[str, ...] | list[str] = (),
          method: str = "POST") -> ProbeOutcome:
    """Classify a probe result into exactly one outcome."""
    status, body, duration = result.status, result.body, result.duration
    doc = _parse(body) if body.strip() else _NOT_JSON
    pii = find_pii(body, doc) if body else ()
    if result.error is not None and not (
        # a non-2xx answer says more through its status than through its size
        result.error == "body_too_large" and status is not None and not 200 <= status < 300
    ):
        return ProbeOutcome("error", result.error, status, duration, pii)
    assert status is not None
    if status == 429:
        return ProbeOutcome("error", "rate_limited", status, duration, pii)
    if status == 503 and _is_feature_disabled(doc):
        return ProbeOutcome("disabled", None, status, duration, pii)
    if status >= 500:
        return ProbeOutcome("error", "http_5xx", status, duration, pii)
    if status >= 400:
        return ProbeOutcome("error", "http_4xx", status, duration, pii)
    if status >= 300 or status < 200:
        return ProbeOutcome("error", "http_3xx", status, duration, pii)
    if method == "HEAD":
        return ProbeOutcome("success", None, status, duration, pii)
    if not body.strip():
        return ProbeOutcome("null", None, status, duration, pii)
    if doc is _NOT_JSON:
        return ProbeOutcome("error", "invalid_json", status, duration, pii)
    if doc is None or (required_fields and not has_fields(doc, required_fields)):
        return ProbeOutcome("null", None, status, duration, pii)
    return ProbeOutcome("success", None, status, duration, pii)


def _is_feature_disabled(doc: object) -> bool:
    """A 503 whose JSON detail says a feature is not enabled (``"Edge AI not enabled"``)."""
    if not isinstance(doc, dict):
        return False
    for key in ("detail", "message", "error", "reason"):
        value = doc.get(key)
        if isinstance(value, dict):  # {"detail": {"msg": ...}}
            value = " ".join(str(v) for v in value.values())
        if isinstance(value, str) and _DISABLED_RE.search(value):
            return True
    return False


def has_fields(doc: object, fields: tuple[str, ...] | list[str]) -> bool:
    """Every field present and not null; ``a.b`` reaches into nested objects."""
    return all(_field_value(doc, field) is not None for field in fields)


def missing_fields(doc: object, fields: tuple[str, ...] | list[str]) -> list[str]:
    """The required fields absent or null in ``doc`` (all of them when it is no object)."""
    return [field for field in fields if _field_value(doc, field) is None]


def non_null_fields(doc: object) -> list[str]:
    """The top-level fields of a JSON object that hold a value, in order (none for a non-object)."""
    if not isinstance(doc, dict):
        return []
    return [k for k, v in doc.items() if v is not None]


def parse_body(body: bytes) -> object:
    """The JSON document of a body, or ``NOT_JSON``."""
    return _parse(body) if body.strip() else NOT_JSON


def _field_value(doc: object, field: str) -> object:
    node = doc
    for part in field.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
        if node is None:
            return None
    return node


# -- PII ----------------------------------------------------------------------------------
# Patterns work on bytes (no decode per probe). Boundaries: no word character, dot, plus or
# dash directly before or after, so a pattern never matches part of an id, a UUID, a
# timestamp, a decimal fraction or a longer number.

_EMAIL_RE = re.compile(
    rb"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    rb"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])"
)
# SSN: AAA-GG-SSSS (dashes or spaces), without the never-issued areas 000, 666, 9xx.
_SSN_RE = re.compile(rb"(?<![\w.+/-])(?!000|666|9)(\d{3})([- ])(?!00)\d{2}\2(?!0000)\d{4}(?![\w/-]|\.\d)")
# Phones: NANP 555-123-4567, 555.123.4567, 555 123 4567 (one separator used throughout),
# (555) 123-4567, optionally +1; or international +CC with 8-14 more digits in groups.
_PHONE_RE = re.compile(
    rb"(?<![\w.+/-])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ ]?\d{3}[ .-]\d{4}|\d{3}([ .-])\d{3}\1\d{4})(?![\w/-]|\.\d)"
    rb"|(?<![\w.+/-])\+[1-9]\d{0,2}(?:[ .-]?\d{1,4}){2,5}(?![\w/-]|\.\d)"
)
# Cards: 13-19 digits, bare or in groups of 4 (Amex 4-6-5) joined by one space or dash kind.
_CARD_RE = re.compile(rb"(?<![\w.+/-])\d(?:[ -]?\d){12,18}(?![\w/-]|\.\d)")


_CARD_KEY_RE = re.compile(r"card|pan\b|cc_?num|credit", re.I)


def find_pii(body: bytes, doc: object = None) -> tuple[str, ...]:
    """The PII kinds present unredacted in ``body`` (each kind once, in PII_KINDS order).

    A JSON body is judged by its strings (values and keys): a JSON *number* is an id, a
    count or a measurement, never free text, so a 16-digit numeric id that happens to pass
    Luhn is not a card, unless its key says it is one (``card_number``, ``pan``, ...).
    Anything that is not JSON is scanned as it is. ``doc``: the parsed body when the caller
    has it already.
    """
    if doc is None:
        doc = _parse(body) if body.strip() else _NOT_JSON
    numbers: list[int] = []
    if doc is _NOT_JSON:
        text = body
    else:
        strings: list[str] = []
        _collect(doc, "", strings, numbers)
        text = "\n".join(strings).encode()
    found = []
    if b"@" in text and _EMAIL_RE.search(text):
        found.append("email")
    if _SSN_RE.search(text):
        found.append("ssn")
    if any(_phone_ok(m.group(0)) for m in _PHONE_RE.finditer(text)):
        found.append("phone")
    if any(_card_ok(m.group(0)) for m in _CARD_RE.finditer(text)) or any(
        _card_ok(str(n).encode()) for n in numbers
    ):
        found.append("card")
    return tuple(found)


def _collect(node: object, key: str, strings: list[str], numbers: list[int]) -> None:
    if isinstance(node, str):
        strings.append(node)
    elif isinstance(node, dict):
        for k, v in node.items():
            strings.append(k)
            _collect(v, k, strings, numbers)
    elif isinstance(node, list):
        for v in node:
            _collect(v, key, strings, numbers)
    elif type(node) is int and node >= 10 ** 12 and _CARD_KEY_RE.search(key):
        numbers.append(node)


def _phone_ok(text: bytes) -> bool:
    digits = re.sub(rb"\D", b"", text)
    if text.startswith(b"+") and not text.startswith(b"+1"):
        return 9 <= len(digits) <= 15
    return len(digits) in (10, 11)


_CARD_PREFIXES = (
    (b"4", (13, 16, 19)),                                   # Visa
    (b"34", (15,)), (b"37", (15,)),                          # Amex
    (b"6011", (16, 19)), (b"65", (16, 19)), (b"644", (16, 19)), (b"645", (16, 19)),
    (b"646", (16, 19)), (b"647", (16, 19)), (b"648", (16, 19)), (b"649", (16, 19)),  # Discover
    (b"35", (16, 19)),                                       # JCB
    (b"36", (14,)), (b"300", (14,)), (b"301", (14,)), (b"302", (14,)), (b"303", (14,)),
    (b"304", (14,)), (b"305", (14,)), (b"38", (14,)),        # Diners
    (b"62", (16, 17, 18, 19)),                               # UnionPay
)


def _card_ok(text: bytes) -> bool:
    groups = re.split(rb"[ -]", text)
    if len(groups) > 1:
        lengths = [len(g) for g in groups]
        if lengths[:2] != [4, 6] and any(n != 4 for n in lengths[:-1]):
            return False
    digits = b"".join(groups)
    n = len(digits)
    if not 13 <= n <= 19:
        return False
    if not _issuer_ok(digits, n):
        return False
    return luhn_ok(digits)


def _issuer_ok(digits: bytes, n: int) -> bool:
    if digits[:2] in (b"51", b"52", b"53", b"54", b"55") or 2221 <= int(digits[:4]) <= 2720:
        return n == 16  # Mastercard
    return any(digits.startswith(p) and n in lens for p, lens in _CARD_PREFIXES)


def luhn_ok(digits: bytes | str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits if isinstance(digits, str) else digits.decode())):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
