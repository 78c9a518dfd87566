"""Preflight: run every content check of the plan against the baseline before guarding.

A check that already fails on the baseline (the stable release, which nobody is rolling back)
is a bug in the plan, not in the canary: a required field the service never returns, a
timeout below its slow tail, a latency threshold its healthy answers cross. Each finding names
the endpoint and, where there is one, the field, and says what to change.

``canary-guard plan check --against URL`` prints the findings (exit 1 on a failing one); the
exporter runs the same checks at start-up and logs them as loud warnings (it starts anyway:
the plan may be right and the baseline broken).
"""

from __future__ import annotations

from dataclasses import dataclass

from canary_guard.durations import format_duration, human_seconds

from .plan import Plan
from .plan.model import suggest_timeout
from .sampling import Sample

FAIL, WARN = "fail", "warn"


@dataclass(frozen=True)
class Finding:
    severity: str  # FAIL: the check fails on the baseline; WARN: it may, on a bad day
    endpoint: str
    field: str | None  # the required field, or None for the endpoint as a whole
    problem: str  # for people: what fails, how often, and what to change

    def line(self) -> str:
        where = self.endpoint + (f".{self.field}" if self.field else "")
        return f"{self.severity.upper():<4}  {where}: {self.problem}"


def _n(k: int, n: int) -> str:
    return f"{k}/{n} answer{'s' if n != 1 else ''}"


def check(plan: Plan, samples: dict[str, Sample]) -> list[Finding]:
    """Every finding for the sampled endpoints, in plan order."""
    out: list[Finding] = []
    for ep in plan.endpoints:
        s = samples.get(ep.name)
        if s is None:
            continue
        out += _check_endpoint(plan, s)
    return out


def _check_endpoint(plan: Plan, s: Sample) -> list[Finding]:
    ep, answers = s.endpoint, s.answers
    n = len(answers)
    if n == 0:
        return [Finding(WARN, ep.name, None, "not probed (the sample ended first)")]
    out: list[Finding] = []
    by_outcome: dict[str, list] = {}
    for a in answers:
        by_outcome.setdefault(a.outcome.outcome, []).append(a)
    errors = by_outcome.get("error", [])
    if errors:
        reasons: dict[str, int] = {}
        for a in errors:
            o = a.outcome
            key = f"HTTP {o.status}" if o.status and o.reason and o.reason.startswith("http_") else (
                o.reason or "error")
            reasons[key] = reasons.get(key, 0) + 1
        what = ", ".join(f"{k} in {_n(v, n)}" for k, v in reasons.items())
        hint = ""
        if "timeout" in reasons:
            hint = (f"; its probe timeout is {format_duration(plan.endpoint_timeout(ep))}: raise "
                    f"endpoints[{plan.endpoints.index(ep)}].timeout above its slow tail")
        out.append(Finding(FAIL, ep.name, None, f"errors on the baseline: {what}{hint}"))
    disabled = by_outcome.get("disabled", [])
    if disabled:
        out.append(Finding(WARN, ep.name, None,
                           f"feature disabled on the baseline ({_n(len(disabled), n)} are 503 "
                           "'not enabled'): its content checks cannot be verified there"))
    answered = [a for a in answers if a.outcome.outcome in ("success", "null")]
    whole = [a for a in answered if a.body != "object"]
    if whole:
        kinds = sorted({a.body for a in whole})
        out.append(Finding(FAIL, ep.name, None,
                           f"the body is {' or '.join(kinds)} in {_n(len(whole), n)}: every one "
                           "counts as a null response"))
    objects = [a for a in answered if a.body == "object"]
    if objects:
        returned = list(dict.fromkeys(f for a in objects for f in a.fields or ()))
        for i, name in enumerate(ep.required_fields):
            lacking = [a for a in objects if name in a.missing]
            if not lacking:
                continue
            where = f"endpoints[{plan.endpoints.index(ep)}].required_fields[{i}]"
            top = name.split(".", 1)[0]
            if top not in returned:
                why = (f"absent or null in every answer of the baseline ({_n(len(lacking), len(objects))}"
                       f"; it returns {', '.join(returned) or 'no non-null field'})")
            else:
                why = f"absent or null in {_n(len(lacking), len(objects))}"
            out.append(Finding(FAIL, ep.name, name,
                               f"required field {why}. Every such answer counts as a null response: "
                               f"remove it from {where} (`plan learn --write` does)"))
    leaks = [a for a in answers if a.outcome.pii]
    if leaks:
        kinds = sorted({k for a in leaks for k in a.outcome.pii})
        out.append(Finding(FAIL, ep.name, None,
                           f"unredacted PII ({', '.join(kinds)}) in {_n(len(leaks), n)}: the service "
                           "already leaks it, so the PII trigger would fire on any canary running "
                           "the same code"))
    out += _latency_findings(plan, s)
    return out


def _latency_findings(plan: Plan, s: Sample) -> list[Finding]:
    ep = s.endpoint
    xs = s.latencies
    if not xs:
        return []
    out = []
    p95, p99, slowest = s.quantile(0.95), s.quantile(0.99), xs[-1]
    assert p95 is not None and p99 is not None
    idx = plan.endpoints.index(ep)
    limits = [("", plan.endpoint_timeout(ep))]
    if ep.timeout is None and plan.demo.probe_timeout != plan.probe.timeout:
        limits.append((" under the demo settings", plan.demo.probe_timeout))
    for setting, limit in limits:
        if slowest >= limit / 2 or p99 >= limit / 2:
            seen = (f"slowest answer {human_seconds(slowest)} (p99 {human_seconds(p99)} of "
                    f"{len(xs)})")
            fix = format_duration(suggest_timeout(p99, slowest))
            out.append(Finding(
                WARN, ep.name, None,
                f"{seen} is close to the probe timeout {format_duration(limit)}{setting}: a healthy "
                f"answer that takes longer counts as an error; set endpoints[{idx}].timeout to at "
                f"least {fix}"))
    for j, trig in enumerate(plan.triggers):
        if trig.kind != "latency_avg" or not trig.threshold or trig.source != "probe":
            continue
        if p95 >= trig.threshold:
            out.append(Finding(
                WARN, ep.name, None,
                f"p95 {human_seconds(p95)} is not below triggers[{j}] ({trig.name}) threshold "
                f"{human_seconds(trig.threshold)}: the average of a few healthy probes can cross it"))
    return out


def failed(findings: list[Finding]) -> bool:
    return any(f.severity == FAIL for f in findings)
