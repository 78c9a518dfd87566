"""The judge lives in the shared package (``canary_guard.judge``): ``plan learn`` and the
preflight judge the baseline's answers exactly as the exporter judges every probe."""

from canary_guard.judge import ProbeOutcome, ProbeResult, find_pii, has_fields, judge, luhn_ok

__all__ = ["ProbeOutcome", "ProbeResult", "find_pii", "has_fields", "judge", "luhn_ok"]
