"""Judge a phase: each success criterion with its evidence, the canary against the baseline,
and the decision (promote, hold or rollback).

A criterion passes only when the data *show* it at the plan's confidence (a one-sided
Clopper-Pearson bound for ratios and tail latencies, a normal bound for the mean), fails only
when they show the breach at that confidence, and is ``insufficient`` otherwise (the gate holds:
a marginal breach is neither a promotion nor a rollback; the alerts handle acute ones).
Missing data never promotes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from canary_guard.durations import format_duration
from canary_guard.plan import Criteria, Plan

from . import stats
from .prom import Series

PROMOTE, HOLD, ROLLBACK = "promote", "hold", "rollback"
PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient"
EXIT_CODES = {PROMOTE: 0, HOLD: 2, ROLLBACK: 3}
MEAN_MIN_PROBES = 30  # below this the bound on a mean from a histogram is not trustworthy


@dataclass
class Criterion:
    name: str
    value: float | None  # measured over the window
    threshold: float
    op: str  # the criterion holds when value <op> threshold
    unit: str  # ratio | seconds | endpoints
    probes: int
    verdict: str
    needed: int | None = None  # probes that would show the criterion, when insufficient
    detail: str = ""
    baseline_verdict: str | None = None  # the same criterion on the baseline track, if compared
    shared: bool = False  # breached here and not shown to hold on the baseline: not the release's
    source: str = "probe"  # the evidence: probe (the exporter's) or traffic (the service's requests)


@dataclass
class Comparison:
    endpoint: str
    verdict: str  # regression | ok | insufficient
    canary_probes: int = 0
    baseline_probes: int = 0
    latency: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    detail: str = ""
    source: str = "probe"


@dataclass
class Report:
    decision: str
    plan: str
    phase: str
    track: str
    baseline: str | None
    window: str
    at: float
    reasons: list[str]
    criteria: list[Criterion]
    endpoints: list[dict]
    comparison: list[Comparison]
    timing: dict
    source: str = "probe"  # probe, traffic, or probe+traffic: what the decision rests on
    sources: dict = field(default_factory=dict)  # each source's own decision, when both judged

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    def to_dict(self) -> dict:
        return asdict(self)


# --- the phase criteria --------------------------------------------------------------------


def judge_ratio(name: str, bad: int, n: int, budget: float, confidence: float, *, value: float | None,
                threshold: float, op: str, what: str) -> Criterion:
    """A criterion of the form "the fraction of bad probes is at most ``budget``"."""
    c = Criterion(name, value, threshold, op, "ratio", n, INSUFFICIENT)
    pct = f"{confidence:.0%}"
    if n == 0:
        c.needed = stats.probes_to_show(budget, confidence)
        c.detail = "no probes in the window"
        return c
    if stats.binom_lower(bad, n, confidence) > budget:
        c.verdict = FAIL
        c.detail = f"{bad} {what} in {n} probes: breach shown at {pct}"
    elif stats.binom_upper(bad, n, confidence) <= budget:
        c.verdict = PASS
        c.detail = f"{bad} {what} in {n} probes: shown at {pct}"
    else:
        c.needed = stats.probes_to_show(budget, confidence, bad)
        c.detail = f"{bad} {what} in {n} probes: showing it at {pct} needs >= {c.needed} probes"
        if bad / n > budget:
            c.detail = f"{bad} {what} in {n} probes: over the threshold, but not shown at {pct}"
    return c


def judge_quantile(name: str, q: float, threshold: float, s: Series, confidence: float) -> Criterion:
    """p95/p99 <= threshold, judged as "at most 1-q of the probes are slower than threshold"."""
    buckets = s.sorted_buckets()
    n = round(buckets[-1][1]) if buckets else 0
    value = stats.histogram_quantile(q, buckets)
    budget = 1 - q
    finite = [le for le, _ in buckets if not math.isinf(le)]
    lo = max((le for le in finite if le <= threshold + 1e-12), default=None)
    hi = min((le for le in finite if le >= threshold - 1e-12), default=math.inf)
    cum = dict(buckets)
    over_pass = n - round(cum[lo]) if lo is not None else n  # may over-count: safe for passing
    over_fail = n - round(cum[hi]) if hi in cum else 0  # may under-count: safe for failing
    c = judge_ratio(name, over_pass, n, budget, confidence, value=value, threshold=threshold, op="<=",
                    what=f"probes slower than {_secs(lo or 0)}")
    if c.verdict == FAIL or (n and over_fail / n > budget):
        fail = judge_ratio(name, over_fail, n, budget, confidence, value=value, threshold=threshold, op="<=",
                           what=f"probes slower than {_secs(hi)}")
        if fail.verdict == FAIL:
            return _unit(fail, "seconds")
        if c.verdict == FAIL:  # only the over-counting side breaches: not shown either way
            c.verdict, c.needed = INSUFFICIENT, None
            c.detail += f"; the histogram cannot place {_secs(threshold)} exactly"
    if lo is None and n:
        c.detail += f"; the threshold is below the smallest bucket ({_secs(finite[0])})"
    return _unit(c, "seconds")


def judge_mean(threshold: float, s: Series, confidence: float) -> Criterion:
    n = round(s.latency_count)
    c = Criterion("avg_latency", None, threshold, "<=", "seconds", n, INSUFFICIENT)
    if n == 0:
        c.needed, c.detail = MEAN_MIN_PROBES, "no probes in the window"
        return c
    mean = s.latency_sum / s.latency_count
    c.value = mean
    sd = _histogram_sd(s.sorted_buckets(), mean)
    z = stats.NORMAL.inv_cdf(confidence)
    se = sd / math.sqrt(n)
    if n >= MEAN_MIN_PROBES and mean - z * se > threshold:
        c.verdict, c.detail = FAIL, f"lower bound {_secs(mean - z * se)} at {confidence:.0%}"
    elif n >= MEAN_MIN_PROBES and mean + z * se <= threshold:
        c.verdict, c.detail = PASS, f"upper bound {_secs(mean + z * se)} at {confidence:.0%}"
    else:
        need = MEAN_MIN_PROBES
        if mean < threshold:
            need = max(need, math.ceil((z * sd / (threshold - mean)) ** 2))
        c.needed = need
        c.detail = (f"mean of {n} probes (sd ~{_secs(sd)}): showing it at {confidence:.0%} "
                    f"needs >= {need} probes")
    return c


def _histogram_sd(buckets: list[tuple[float, float]], mean: float) -> float:
    """Standard deviation from bucket midpoints (the +Inf bucket at its lower bound)."""
    counts = stats.per_bucket(buckets)
    total = sum(counts)
    if total < 2:
        return 0.0
    acc, prev = 0.0, 0.0
    for (le, _), c in zip(buckets, counts, strict=True):
        mid = prev if math.isinf(le) else (prev + le) / 2
        acc += c * (mid - mean) ** 2
        prev = le if not math.isinf(le) else prev
    return math.sqrt(acc / (total - 1))


def judge_answering(endpoints: list[str], data: dict[str, Series]) -> Criterion:
    silent = [e for e in endpoints if data.get(e) is None or data[e].counted == 0]
    failing = [e for e in endpoints if e not in silent and data[e].successes == 0]
    answering = len(endpoints) - len(silent) - len(failing)
    c = Criterion("all_endpoints_answering", answering, len(endpoints), ">=", "endpoints",
                  sum(data[e].counted for e in endpoints if e in data), INSUFFICIENT)
    sure_failing = [e for e in failing if data[e].counted >= 3]
    if sure_failing:
        c.verdict = FAIL
        c.detail = "no successful probe: " + ", ".join(sure_failing)
    elif silent or failing:
        parts = (["no probes: " + ", ".join(silent)] if silent else []) + \
            (["no success yet in fewer than 3 probes: " + ", ".join(failing)] if failing else [])
        c.detail = "; ".join(parts)
    else:
        c.verdict, c.detail = PASS, f"all {len(endpoints)} answered"
    return c


def judge_criteria(crit: Criteria, track: Series, per_endpoint: dict[str, Series],
                   endpoints: list[str], confidence: float) -> list[Criterion]:
    n = track.counted
    out = [
        # availability: answered without an error (a null answer is an answer; the comparison
        # with the baseline counts it as a failure), as the rules define it
        judge_ratio("availability", track.errors, n, 1 - crit.availability, confidence,
                    value=((n - track.errors) / n) if n else None, threshold=crit.availability, op=">=",
                    what="failed probes"),
        judge_mean(crit.avg_latency, track, confidence),
        judge_ratio("error_rate", track.errors, n, crit.error_rate, confidence,
                    value=(track.errors / n) if n else None, threshold=crit.error_rate, op="<=",
                    what="errors"),
        judge_quantile("p95_latency", 0.95, crit.p95_latency, track, confidence),
        judge_quantile("p99_latency", 0.99, crit.p99_latency, track, confidence),
    ]
    if crit.all_endpoints_answering:
        out.append(judge_answering(endpoints, per_endpoint))
    return out


def _unit(c: Criterion, unit: str) -> Criterion:
    c.unit = unit
    return c


def _secs(v: float) -> str:
    if math.isinf(v):
        return "+Inf"
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.3g}s"


# --- canary versus baseline ----------------------------------------------------------------


def latency_abs_margin(plan: Plan, criteria: Criteria) -> float:
    """Seconds a latency regression must add at least: the plan's, else 5% of the p95 objective."""
    if plan.analysis.latency_abs_margin is not None:
        return plan.analysis.latency_abs_margin
    return 0.05 * criteria.p95_latency


def compare(plan: Plan, canary: dict[str, Series], baseline: dict[str, Series],
            criteria: Criteria | None = None) -> list[Comparison]:
    """Per endpoint: latency (Mann-Whitney on buckets) and failures (Fisher), Holm-corrected.

    A regression needs significance and practical size, relative and absolute both: the
    canary's median at least ``latency_margin`` slower (or Cliff's delta at least
    ``latency_effect``) and at least ``latency_abs_margin`` slower in median or mean; a failure
    ratio at least ``error_margin`` higher and at least ``error_abs_margin`` more failures than
    the baseline's ratio predicts. Two identical builds differ by noise, which is significant
    now and then (and a few milliseconds across a histogram bucket boundary always are).
    """
    a = plan.analysis
    abs_latency = latency_abs_margin(plan, criteria or plan.slos)
    rows: list[Comparison] = []
    tested: list[tuple[Comparison, Series, Series]] = []
    for ep in plan.endpoints:
        cs, bs = canary.get(ep.name, Series()), baseline.get(ep.name, Series())
        row = Comparison(ep.name, "insufficient", cs.counted, bs.counted)
        rows.append(row)
        if cs.counted < a.min_probes or bs.counted < a.min_probes:
            row.detail = f"needs >= {a.min_probes} probes on each track"
            continue
        tested.append((row, cs, bs))
    conf = 1 - a.alpha
    lat_p, err_p = [], []
    for row, cs, bs in tested:
        les = sorted(set(cs.buckets) | set(bs.buckets))
        cb = stats.per_bucket([(le, cs.buckets.get(le, 0.0)) for le in les])
        bb = stats.per_bucket([(le, bs.buckets.get(le, 0.0)) for le in les])
        if sum(cb) and sum(bb):
            rt = stats.mann_whitney_binned(cb, bb, confidence=conf)
            mc = stats.histogram_quantile(0.5, cs.sorted_buckets())
            mb = stats.histogram_quantile(0.5, bs.sorted_buckets())
            mean_c = cs.latency_sum / cs.latency_count if cs.latency_count else None
            mean_b = bs.latency_sum / bs.latency_count if bs.latency_count else None
            row.latency = {
                "canary_median": mc, "baseline_median": mb,
                "median_change": (mc / mb - 1) if mc is not None and mb else None,
                "median_difference": (mc - mb) if mc is not None and mb is not None else None,
                "mean_difference": (mean_c - mean_b) if mean_c is not None and mean_b is not None
                else None,
                "u": rt.u, "z": rt.z, "p": rt.p_greater,
                "superiority": rt.superiority, "cliffs_delta": rt.cliffs_delta,
                "cliffs_delta_ci": list(rt.delta_ci), "probes": [rt.n1, rt.n2],
            }
            lat_p.append((row, rt.p_greater))
        fc, nc, fb, nb = cs.failures, cs.counted, bs.failures, bs.counted
        lo, hi = stats.newcombe_diff(fc, nc, fb, nb, conf)
        row.errors = {
            "canary_failures": fc, "canary_probes": nc, "canary_ratio": fc / nc,
            "baseline_failures": fb, "baseline_probes": nb, "baseline_ratio": fb / nb,
            "difference": fc / nc - fb / nb, "difference_ci": [lo, hi],
            "excess_failures": fc - nc * fb / nb,
            "p": stats.fisher_greater(fc, nc, fb, nb),
        }
        err_p.append((row, row.errors["p"]))
    for pairs, key in ((lat_p, "latency"), (err_p, "errors")):
        adjusted = stats.holm([p for _, p in pairs])
        for (row, _), adj in zip(pairs, adjusted, strict=True):
            getattr(row, key)["p_holm"] = adj
    for row, _, _ in tested:
        why = []
        lat, err = row.latency, row.errors
        notes = []
        if lat and lat["p_holm"] < a.alpha:
            change = lat["median_change"]
            relative = (change is not None and change >= a.latency_margin) or \
                lat["cliffs_delta"] >= a.latency_effect
            added = max((d for d in (lat["median_difference"], lat["mean_difference"]) if d is not None),
                        default=0.0)
            if relative and added >= abs_latency:
                lat["regression"] = True
                why.append(f"latency: median {_pct(change)} slower (+{_ms(added)}), Cliff's delta "
                           f"{lat['cliffs_delta']:.2f}, p={lat['p_holm']:.2g}")
            elif relative:
                notes.append(f"latency +{_ms(added)} is significant but below the absolute margin "
                             f"of {_ms(abs_latency)}")
        if err["p_holm"] < a.alpha and err["difference"] >= a.error_margin:
            if err["excess_failures"] >= a.error_abs_margin:
                err["regression"] = True
                why.append(f"failures: {err['canary_ratio']:.2%} vs {err['baseline_ratio']:.2%}, "
                           f"p={err['p_holm']:.2g}")
            else:
                notes.append(f"{err['excess_failures']:.1f} failures more than the baseline's ratio "
                             f"predicts: below the absolute margin of {a.error_abs_margin}")
        row.verdict = "regression" if why else "ok"
        row.detail = "; ".join(why) if why else "; ".join(
            ["no regression beyond the margins"] + notes)
    return rows


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:+.0%}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g}ms"


# --- the decision --------------------------------------------------------------------------


def phase_index(plan: Plan, phase: str) -> int:
    """``3`` (1-based) or ``phase_3`` -> index into plan.phases."""
    names = [p.name for p in plan.phases]
    if not names:
        raise ValueError("the plan has no phases")
    if phase in names:
        return names.index(phase)
    if phase.isdigit() and 1 <= int(phase) <= len(names):
        return int(phase) - 1
    raise ValueError(f"no phase {phase!r}: use 1-{len(names)} or one of {', '.join(names)}")


def required_elapsed(plan: Plan, index: int, since_phase_start: bool) -> float | None:
    """Seconds the canary must have run before the phase may end (None: no minimum)."""
    phases = plan.phases[: index + 1] if not since_phase_start else [plan.phases[index]]
    if phases[-1].duration is None:
        return None
    return sum(p.duration or 0.0 for p in phases)


def _mark_shared(criteria: list[Criterion], crit: Criteria, baseline: str,
                 data: dict[tuple[str, str], Series], endpoints: list[str], confidence: float) -> None:
    """A criterion the canary breaches is the release's fault only if the baseline, judged over
    the same window, is shown to meet it. When the baseline breaches it too, or cannot be shown
    to meet it, the cause is shared (two identical builds must never get rollback). A baseline
    without data never blocks a rollback."""
    base = {ep: s for (t, ep), s in data.items() if t == baseline}
    total = Series()
    for ep in endpoints:
        if ep in base:
            total.add(base[ep])
    if total.counted == 0:
        return
    theirs = {c.name: c for c in judge_criteria(crit, total, base, endpoints, confidence)}
    for c in criteria:
        other = theirs.get(c.name)
        if other is None:
            continue
        c.baseline_verdict = other.verdict
        c.shared = c.verdict == FAIL and other.verdict != PASS


def conclude(criteria: list[Criterion], comparison: list[Comparison], reasons: list[str],
             promoted: str) -> tuple[str, list[str]]:
    """The decision and its reasons: a breach (not a shared cause) or a regression rolls back,
    anything not shown holds, else promote (``promoted`` says why)."""
    if any(c.verdict == FAIL and not c.shared for c in criteria) or \
            any(r.verdict == "regression" for r in comparison):
        return ROLLBACK, [r for r in reasons
                          if ("breached" in r and "shared cause" not in r) or "regressed" in r]
    if reasons:
        return HOLD, reasons
    return PROMOTE, [promoted]


def _criterion_reason(c: Criterion, track: str, baseline: str | None, window: float) -> str | None:
    """Why one criterion keeps the canary from promotion, or None when it passed."""
    if c.shared:
        return (f"{c.name} breached on {track} and not shown to hold on {baseline} "
                f"({c.baseline_verdict} there): a shared cause (the service, its "
                f"environment or the objective itself), a rollback would not help: {c.detail}")
    if c.verdict == FAIL:
        return f"{c.name} breached: {c.detail}"
    if c.verdict == INSUFFICIENT:
        hint = ""
        if c.needed and c.probes and c.needed > c.probes:
            longer = math.ceil(window * c.needed / c.probes / 60) * 60
            hint = f" (at this probe rate: --window {format_duration(longer)} or more)"
        return f"{c.name} not shown: {c.detail}{hint}"
    return None


def _endpoint_row(ep: str, s: Series) -> dict[str, Any]:
    """One endpoint's line of the report: its probes and what they measured."""
    return {
        "endpoint": ep, "probes": s.counted, "failures": s.failures, "errors": s.errors,
        "availability": ((s.counted - s.errors) / s.counted) if s.counted else None,
        "avg_latency": (s.latency_sum / s.latency_count) if s.latency_count else None,
        "p95_latency": stats.histogram_quantile(0.95, s.sorted_buckets()),
    }


def decide(plan: Plan, index: int, track: str, baseline: str | None, window: float, at: float,
           data: dict[tuple[str, str], Series], started: float | None, since_flag: bool) -> Report:
    phase = plan.phases[index]
    a = plan.analysis
    endpoints = [e.name for e in plan.endpoints]
    canary = {ep: s for (t, ep), s in data.items() if t == track}
    total = Series()
    for ep in endpoints:
        if ep in canary:
            total.add(canary[ep])
    criteria = judge_criteria(phase.criteria, total, canary, endpoints, a.confidence)
    if baseline:
        _mark_shared(criteria, phase.criteria, baseline, data, endpoints, a.confidence)
    reasons = [r for c in criteria if (r := _criterion_reason(c, track, baseline, window))]

    need = required_elapsed(plan, index, since_flag)
    timing = {"started": started, "elapsed": None, "required": need, "verdict": PASS}
    if need is not None:
        if started is None:
            timing["verdict"] = INSUFFICIENT
            reasons.append(f"no probes of track {track!r}: cannot tell when the phase started")
        else:
            timing["elapsed"] = at - started
            if at - started < need:
                timing["verdict"] = INSUFFICIENT
                what = f"phase {phase.name}" if since_flag else f"the canary (phases 1-{index + 1})"
                reasons.append(f"too early: {what} has run {format_duration(round(at - started))} "
                               f"of {format_duration(need)}")

    comparison: list[Comparison] = []
    if baseline:
        base = {ep: s for (t, ep), s in data.items() if t == baseline}
        comparison = compare(plan, canary, base, phase.criteria)
        for row in comparison:
            if row.verdict == "regression":
                reasons.append(f"{row.endpoint} regressed against {baseline}: {row.detail}")
        short = [r.endpoint for r in comparison if r.verdict == "insufficient"]
        if short:
            reasons.append(f"comparison with {baseline} lacks data ({a.min_probes}+ probes each) for: "
                           + ", ".join(short))

    decision, reasons = conclude(criteria, comparison, reasons, "every criterion shown"
                                 + (f"; no regression against {baseline}" if baseline else ""))

    per_endpoint = [_endpoint_row(ep, canary.get(ep, Series())) for ep in endpoints]
    return Report(decision, plan.name, phase.name, track, baseline, format_duration(window), at, reasons,
                  criteria, per_endpoint, comparison, timing)
