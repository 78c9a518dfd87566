"""The judge: outcome classification and PII detection (no network)."""

from __future__ import annotations

import json
import random

import pytest

from canary_guard.contract import ERROR_REASONS, OUTCOMES
from canary_guard.judge import (
    ProbeResult,
    find_pii,
    judge,
    luhn_ok,
)


def ok(body, status=200, **kw) -> ProbeResult:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ProbeResult(status=status, body=raw, duration=0.01, **kw)


# -- outcomes ---------------------------------------------------------------------------------

def test_success_with_required_fields():
    out = judge(ok({"result": {"x": 1}, "timestamp": "t"}), ["result", "timestamp"])
    assert (out.outcome, out.reason, out.status, out.duration) == ("success", None, 200, 0.01)


@pytest.mark.parametrize("body", [b"", b"   \n", b"null", b" null "])
def test_null_bodies(body):
    assert judge(ok(body), ["result"]).outcome == "null"
    assert judge(ok(body), []).outcome == "null"


@pytest.mark.parametrize("doc", [
    {"result": None, "timestamp": "t"},
    {"timestamp": "t"},
    {"result": {"a": 1}},
    [1, 2, 3],
])
def test_null_when_a_required_field_is_missing_or_null(doc):
    assert judge(ok(doc), ["result", "timestamp"]).outcome == "null"


def test_required_fields_reach_into_nested_objects():
    assert judge(ok({"result": {"score": 0.5}}), ["result.score"]).outcome == "success"
    assert judge(ok({"result": {"score": None}}), ["result.score"]).outcome == "null"
    assert judge(ok({"result": 3}), ["result.score"]).outcome == "null"


def test_falsy_values_are_not_null():
    doc = {"a": 0, "b": False, "c": "", "d": [], "e": {}}
    assert judge(ok(doc), list(doc)).outcome == "success"


def test_invalid_json():
    out = judge(ok(b"{not json"), ["result"])
    assert (out.outcome, out.reason) == ("error", "invalid_json")
    assert judge(ok(b"\xff\xfe garbage"), []).reason == "invalid_json"


@pytest.mark.parametrize("status,reason", [
    (500, "http_5xx"), (502, "http_5xx"), (503, "http_5xx"), (400, "http_4xx"), (401, "http_4xx"),
    (404, "http_4xx"), (429, "rate_limited"), (301, "http_3xx"), (101, "http_3xx"),
])
def test_status_reasons(status, reason):
    out = judge(ok({"detail": "Internal error"}, status=status))
    assert (out.outcome, out.reason, out.status) == ("error", reason, status)


@pytest.mark.parametrize("detail", [
    "Edge AI not enabled", "Feature quantum_crypto is disabled", "feature flag off: causal_ai",
    {"msg": "Neuromorphic not enabled"},
])
def test_disabled_feature_503(detail):
    out = judge(ok({"detail": detail, "status_code": 503}, status=503), ["result"])
    assert (out.outcome, out.reason) == ("disabled", None)


@pytest.mark.parametrize("body", [
    b'{"detail": "Service temporarily unavailable"}', b"Service Unavailable", b"", b'["not enabled"]',
])
def test_other_503_is_an_error(body):
    assert judge(ok(body, status=503)).reason == "http_5xx"


def test_disabled_only_on_503():
    assert judge(ok({"detail": "Edge AI not enabled"}, status=500)).reason == "http_5xx"


@pytest.mark.parametrize("reason", ["timeout", "connect", "reset", "tls", "other"])
def test_transport_errors(reason):
    out = judge(ProbeResult(error=reason), ["result"])
    assert (out.outcome, out.reason, out.duration) == ("error", reason, None)


def test_body_too_large():
    out = judge(ProbeResult(status=200, duration=0.2, error="body_too_large"))
    assert (out.outcome, out.reason, out.duration) == ("error", "body_too_large", 0.2)
    # a huge error page is reported by its status
    assert judge(ProbeResult(status=502, duration=0.2, error="body_too_large")).reason == "http_5xx"
    assert judge(ProbeResult(status=429, duration=0.2, error="body_too_large")).reason == "rate_limited"


def test_head_needs_no_body():
    assert judge(ok(b""), ["result"], method="HEAD").outcome == "success"


def test_outcomes_and_reasons_are_bounded_sets():
    assert OUTCOMES == ("success", "error", "null", "disabled")
    for r in ("timeout", "connect", "reset", "http_5xx", "http_4xx", "rate_limited", "invalid_json",
              "body_too_large"):
        assert r in ERROR_REASONS


def test_pii_is_flagged_independently_of_the_outcome():
    body = {"result": {"note": "mail jane.doe@example.com"}, "timestamp": "t"}
    out = judge(ok(body), ["result"])
    assert (out.outcome, out.pii) == ("success", ("email",))
    assert judge(ok(body, status=500)).pii == ("email",)
    assert judge(ok({"result": None, "ssn": "123-45-6789"}), ["result"]).pii == ("ssn",)


# -- PII positives ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,kind", [
    ("jane.doe@example.com", "email"),
    ("contact: J.Doe+recovery@mail.clinic.co.uk.", "email"),
    ("user_1@sub-domain.example.org", "email"),
    ("123-45-6789", "ssn"),
    ("SSN 219 09 9999", "ssn"),
    ("ssn=078-05-1120.", "ssn"),
    ("(555) 123-4567", "phone"),
    ("555-123-4567", "phone"),
    ("call 555.123.4567 now", "phone"),
    ("+1 555 123 4567", "phone"),
    ("+1-555-123-4567", "phone"),
    ("+44 20 7946 0958", "phone"),
    ("+49 30 123456", "phone"),
    ("4111 1111 1111 1111", "card"),
    ("4111111111111111", "card"),
    ("4111-1111-1111-1111", "card"),
    ("5555555555554444", "card"),
    ("2223 0031 2200 3222", "card"),
    ("378282246310005", "card"),
    ("3782 822463 10005", "card"),
    ("6011111111111117", "card"),
])
def test_pii_positive(text, kind):
    body = json.dumps({"result": {"patient": {"value": text}}, "id": 7}).encode()
    assert kind in find_pii(body), text


def test_pii_kinds_reported_once_each_in_order():
    body = json.dumps({"a": "4111 1111 1111 1111", "b": "x@y.io", "c": "z@w.io",
                       "d": "(555) 123-4567", "e": "123-45-6789"}).encode()
    assert find_pii(body) == ("email", "ssn", "phone", "card")


# -- PII negatives: what normal responses are full of -----------------------------------------

NEGATIVES = [
    "[EMAIL_REDACTED]", "[SSN_REDACTED]", "[PHONE_REDACTED]", "[CARD_REDACTED]", "[ADDRESS_REDACTED]",
    "contact [EMAIL_REDACTED] for details",
    "550e8400-e29b-41d4-a716-446655440000",
    "123e4567-e89b-12d3-a456-426614174000",
    "4fa3b2c1d0e9f8a7b6c5d4e3f2a1b0c9",  # trace id
    "2024-01-15T10:30:00.123456Z", "2024-01-15 10:30:00", "2026-11-27T08:58:05+05:30",
    1700000000, 1700000000123, 1732700000.123456, "1700000000",
    [0.8, 0.6, 0.9], [0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0],
    0.4111111111111111, 0.5555555555554444, -4111111111111111, 4.111111111111111e15,
    "clinic_001", "qk-3fa9b2c1d0e9", "deploy-000123", "stress_prediction",
    "model@v2", "user@localhost", "git@github", "@mention",
    "v1.2.3", "192.168.1.10", "10.0.0.1:8080", "1.2.840.113549.1.1.1",
    "CRYSTALS-Kyber-768", "xai-1.8.0", "2.4.1-sandbox",
    "000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000",  # never-issued SSNs
    "4111111111111112",  # fails Luhn
    "1234567890123456",  # no issuer, fails Luhn
    "9999999999999995",  # Luhn-valid, no issuer
    "17000000001234",
    "order 12345", "round 41", "ciphertext_modulus_bits 438",
    "/api/v1/items/4111111111111111/", "ZXhhbXBsZQ+15551234567==/",
    "555-1234", "123-456", "1-2-3-4",
]


@pytest.mark.parametrize("value", NEGATIVES, ids=[str(v)[:30] for v in NEGATIVES])
def test_pii_negative(value):
    body = json.dumps({"result": {"value": value}, "timestamp": "2024-01-15T10:30:00.123456Z"}).encode()
    assert find_pii(body) == ()


def test_no_pii_in_thousands_of_normal_sandbox_bodies():
    from canary_guard.sandbox.responses import Bodies

    from canary_guard.plan import load_plan

    plan = load_plan()
    bodies = Bodies(random.Random(1234))
    for _ in range(300):
        for ep in plan.endpoints:
            body = bodies.build(ep.name, ep.required_fields, ep.body)
            raw = json.dumps(body).encode()
            assert find_pii(raw) == (), raw


def test_no_pii_in_random_numbers_and_ids():
    rng = random.Random(99)
    values = []
    for _ in range(3000):
        values += [rng.random(), rng.uniform(-1e6, 1e6), rng.getrandbits(64), rng.getrandbits(53),
                   f"{rng.getrandbits(128):032x}", rng.randrange(10 ** 9, 10 ** 10)]
    assert find_pii(json.dumps(values).encode()) == ()


def test_sandbox_pii_samples_are_found():
    from canary_guard.sandbox.responses import PII_SAMPLES

    for kind, (_, value) in PII_SAMPLES.items():
        assert find_pii(json.dumps({"x": value}).encode()) == (kind,)


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112") and not luhn_ok("79927398710")


def test_numeric_ids_are_not_cards_unless_the_key_says_so():
    assert find_pii(b'{"id": 4111111111111111, "user_id": 5555555555554444}') == ()
    assert find_pii(b'{"card_number": 4111111111111111}') == ("card",)
    assert find_pii(b'{"id": "4111111111111111"}') == ("card",)  # a string is text


def test_non_json_bodies_are_scanned_raw():
    assert find_pii(b"<html>Error for jane@example.com</html>") == ("email",)
    assert find_pii(b"<html>Error 4111111111111111</html>") == ("card",)
