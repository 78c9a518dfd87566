"""One decision from two sources of evidence: the probes and the service's own requests.

Each source is judged on its own (``evaluate.decide``); then, criterion by criterion and
endpoint by endpoint:

- a breach or a regression shown by either source rolls back (a shared cause, breached on the
  baseline too, never does);
- a criterion is shown when either source shows it and neither shows its breach: users are far
  more numerous than probes, so traffic shows a criterion long before the probes can, and the
  gate promotes sooner;
- what neither shows holds the phase.

The probes still see what the service cannot (null bodies, missing fields, PII) and the service
sees what the probes are too few to show: the report says which source decided each line.
"""

from __future__ import annotations

from dataclasses import replace

from .evaluate import FAIL, INSUFFICIENT, PASS, Comparison, Criterion, Report, conclude

SOURCES = ("probe", "traffic")


def _pick(cs: list[Criterion]) -> Criterion:
    """The deciding verdict of one criterion among its sources."""
    for c in cs:
        if c.verdict == FAIL and not c.shared:
            return c
    for c in cs:
        if c.verdict == PASS:
            return c
    for c in cs:
        if c.shared:
            return c
    return max(cs, key=lambda c: c.probes)  # not shown: the one with the most evidence


def _pick_row(rows: list[Comparison]) -> Comparison:
    """A regression shown by either source; else the verdict with the most evidence."""
    for verdict in ("regression", "ok"):
        found = [r for r in rows if r.verdict == verdict]
        if found:
            return max(found, key=lambda r: min(r.canary_probes, r.baseline_probes))
    return max(rows, key=lambda r: min(r.canary_probes, r.baseline_probes))


def merge(probe: Report, traffic: Report) -> Report:
    """The decision over both reports (each judged one source); the probe report's timing."""
    by_name: dict[str, list[Criterion]] = {}
    for rep in (probe, traffic):
        for c in rep.criteria:
            by_name.setdefault(c.name, []).append(c)
    criteria = [_pick(cs) for cs in by_name.values()]
    rows: dict[str, list[Comparison]] = {}
    for rep in (probe, traffic):
        for r in rep.comparison:
            rows.setdefault(r.endpoint, []).append(r)
    comparison = [_pick_row(rs) for rs in rows.values()]

    reasons: list[str] = []
    for c in criteria:
        if c.shared:
            reasons.append(f"{c.name} breached on {probe.track} ({c.source}) and not shown to hold on "
                           f"{probe.baseline} ({c.baseline_verdict} there): a shared cause, a rollback "
                           f"would not help: {c.detail}")
        elif c.verdict == FAIL:
            reasons.append(f"{c.name} breached ({c.source}): {c.detail}")
        elif c.verdict == INSUFFICIENT:
            reasons.append(f"{c.name} not shown by the probes nor the requests: {c.detail}")
    if probe.timing["verdict"] == INSUFFICIENT:
        reasons += [r for r in probe.reasons if r.startswith(("too early", "no probes of track"))]
    for r in comparison:
        if r.verdict == "regression":
            reasons.append(f"{r.endpoint} regressed against {probe.baseline} ({r.source}): {r.detail}")
    short = [r.endpoint for r in comparison if r.verdict == "insufficient"]
    if short:
        reasons.append(f"comparison with {probe.baseline} lacks data (probes or requests) for: "
                       + ", ".join(short))

    decision, reasons = conclude(criteria, comparison, reasons,
                                 "every criterion shown by the probes or the requests"
                                 + (f"; no regression against {probe.baseline}" if probe.baseline else ""))
    return replace(
        probe, decision=decision, reasons=reasons, criteria=criteria, comparison=comparison,
        source="+".join(SOURCES),
        sources={"probe": {"decision": probe.decision, "reasons": probe.reasons},
                 "traffic": {"decision": traffic.decision, "reasons": traffic.reasons,
                             "endpoints": traffic.endpoints}},
    )


def label(report: Report, source: str) -> Report:
    """Mark a single-source report (and its lines) with its source; a traffic report counts
    requests where the judging code says probes."""
    def words(text: str) -> str:
        return text.replace("probes", "requests").replace("probe", "request") if source == "traffic" else text

    for c in report.criteria:
        c.source, c.detail = source, words(c.detail)
    for r in report.comparison:
        r.source, r.detail = source, words(r.detail)
    report.source = source
    report.reasons = [words(r) for r in report.reasons]
    return report
