"""Phase gates: per phase and track, does the track meet each success criterion now (1 or 0).

Like a trigger unit, this module owns its recording rules and their promtool tests side by side.
"""

from __future__ import annotations

from fractions import Fraction

from canary_guard import contract
from canary_guard.plan import Criteria, Plan

from . import names
from .cases import Cases
from .model import RecordingRule
from .names import GATE_ALL_OK, GATE_OK
from .promql import labels as label_set
from .promql import num, selector
from .promtest import ExprCheck, Series, UnitTest, cumulative, encode, number

CRITERIA = ("availability", "avg_latency", "error_rate", "p95_latency", "p99_latency",
            "all_endpoints_answering")


def phases(plan: Plan) -> list[tuple[str, Criteria]]:
    """(name, criteria) per phase; a plan without phases is judged on its SLOs."""
    return [(ph.name, ph.criteria) for ph in plan.phases] or [("slos", plan.slos)]


def windows(plan: Plan) -> list[float]:
    """The SLO window (dashboards show it even when phases judge others) and each phase's."""
    return [plan.slos.window, *(c.window for _, c in phases(plan))]


def gate_rules(plan: Plan) -> list[RecordingRule]:
    answering_window = min(plan.windows())
    n_endpoints = len(plan.endpoints)
    ratio, latency, T = names.ratio, names.latency, names.TRACK
    out: list[RecordingRule] = []
    for name, c in phases(plan):
        win = c.window
        exprs = {
            "availability": f"{ratio(T, 'availability', win)} >= bool {num(c.availability)}",
            "avg_latency": f"{latency(T, 'avg', win)} < bool {num(c.avg_latency)}",
            "error_rate": f"{ratio(T, 'error_ratio', win)} < bool {num(c.error_rate)}",
            "p95_latency": f"{latency(T, 'p95', win)} < bool {num(c.p95_latency)}",
            "p99_latency": f"{latency(T, 'p99', win)} < bool {num(c.p99_latency)}",
        }
        if c.all_endpoints_answering:
            ok = names.probes(names.TRACK_ENDPOINT, answering_window, contract.SUCCESS)
            exprs["all_endpoints_answering"] = (
                f"(\n  count by (track) ({ok} > 0)\n  or\n  0 * group by (track) ({ok})\n)"
                f"\n>= bool {n_endpoints}"
            )
        for criterion, expr in exprs.items():
            out.append(RecordingRule(GATE_OK, expr, {"phase": name, "criterion": criterion}))
    out.append(RecordingRule(GATE_ALL_OK, f"min by (track, phase) ({GATE_OK})"))
    return out


def test_cases(plan: Plan, cases: Cases) -> list[UnitTest]:
    """A healthy track meets every criterion; one endpoint failing every probe fails some."""
    track = (plan.guarded_tracks() or [plan.targets[0].name])[0]
    crit = phases(plan)
    longest = max(c.window for _, c in crit)
    n = cases.steps(longest) + 2
    at = cases.eval_at(n * cases.s)
    lat = min(min(c.avg_latency, c.p95_latency, c.p99_latency) for _, c in crit) / 2
    bounds = [lat]  # every probe in the first bucket: p95/p99 interpolate below lat
    first = plan.endpoints[0].name
    dur = contract.PROBE_DURATION

    def series(failing: str | None) -> list[Series]:
        out = []
        for e in plan.endpoints:
            bad = e.name == failing
            out += cases.probe_series(track, e.name, n, {contract.ERROR: 1} if bad else {contract.SUCCESS: 1})
            count = encode(cumulative([1] * n))
            out.append(Series(selector(f"{dur}_count", track=track, endpoint=e.name), count))
            out.append(Series(selector(f"{dur}_sum", track=track, endpoint=e.name),
                              encode(cumulative([lat] * n))))
            for le, hit in [*((number(b), b >= lat) for b in bounds), ("+Inf", True)]:
                out.append(Series(
                    selector(f"{dur}_bucket", track=track, endpoint=e.name, le=le),
                    count if hit else encode([0] * (n + 1))))
        return out

    def samples(failing: bool) -> tuple[list[dict], list[dict]]:
        ok, all_ok = [], []
        for name, c in crit:
            # one endpoint of the track fails every probe: a share f of the track's probes
            f = Fraction(1, len(plan.endpoints)) if failing else Fraction(0)
            values = {
                "availability": int(1 - f >= Fraction(str(c.availability))),
                "avg_latency": 1, "p95_latency": 1, "p99_latency": 1,
                "error_rate": int(f < Fraction(str(c.error_rate))),
            }
            if c.all_endpoints_answering:
                values["all_endpoints_answering"] = 0 if failing else 1
            for criterion, v in values.items():
                ok.append({"labels": GATE_OK + label_set(criterion=criterion, phase=name, track=track),
                           "value": v})
            all_ok.append({"labels": GATE_ALL_OK + label_set(phase=name, track=track),
                           "value": min(values.values())})
        return ok, all_ok

    out = []
    for failing, title in (
        (None, f"phase gates: a healthy {track} meets every criterion of every phase"),
        (first, f"phase gates: {first} failing every probe (1 of {len(plan.endpoints)} endpoints)"),
    ):
        ok, all_ok = samples(failing is not None)
        out.append(UnitTest(
            title, cases.s, series(failing), [],
            [ExprCheck(at, GATE_OK + label_set(track=track), ok),
             ExprCheck(at, GATE_ALL_OK + label_set(track=track), all_ok)],
        ))
    return out
