"""Plan -> concrete rule specs: every recording and alerting rule, before any output format.

The output layer (``render.py``) only turns these dataclasses into files, so that the rule file,
the PrometheusRule resource and the unit tests can never disagree about a name or an expression.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canary_guard.durations import format_duration
from canary_guard.plan import Plan, Trigger

COUNTED = 'outcome!="disabled"'  # feature-flag 503s say nothing about the release
QUANTILES = (("p95", 0.95), ("p99", 0.99))
LEVELS = (("track_endpoint", "track, endpoint"), ("track", "track"))
GATE_CRITERIA = ("availability", "avg_latency", "error_rate", "p95_latency", "p99_latency",
                 "all_endpoints_answering")

# PromQL template functions the annotations use to show the measured value
VALUE_FORMAT = {
    "error_rate": "humanizePercentage",
    "availability": "humanizePercentage",
    "latency_avg": "humanizeDuration",
    "null_streak": "humanize",
    "pii_exposure": 'printf "%.0f"',
    "probes_missing": "humanizeDuration",
    "custom": "humanize",
}


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: float
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class RuleGroup:
    name: str
    interval: float
    rules: list[RecordingRule | AlertRule]


# -- names ---------------------------------------------------------------------------------


def w(seconds: float) -> str:
    return format_duration(seconds)


def probes(level: str, window: float, outcome: str | None = None) -> str:
    """``track_endpoint:canary_probes_error:rate5m``; outcome None = every counted probe."""
    metric = "canary_probes" + (f"_{outcome}" if outcome else "")
    return f"{level}:{metric}:rate{w(window)}"


def ratio(level: str, what: str, window: float) -> str:
    return f"{level}:canary_probe_{what}:ratio_rate{w(window)}"


def latency(level: str, stat: str, window: float) -> str:
    return f"{level}:canary_probe_duration_seconds:{stat}_rate{w(window)}"


GATE_OK = "track:canary_phase_gate:ok"
GATE_ALL_OK = "track:canary_phase_gate:all_ok"


def recording_names(plan: Plan) -> list[str]:
    return [r.record for g in build_groups(plan) for r in g.rules if isinstance(r, RecordingRule)]


# -- helpers -------------------------------------------------------------------------------


def _num(value: float) -> str:
    """A PromQL number literal without float noise (0.02, not 0.020000000000000004)."""
    return f"{value:.10g}"


def _tracks(tracks: list[str]) -> str:
    return "|".join(tracks)


def _pct(value: float) -> str:
    return f"{value * 100:.10g}%"


def _seconds_text(value: float) -> str:
    return f"{value * 1000:.10g}ms" if value < 1 else f"{value:.10g}s"


def runbook_url(plan: Plan, trigger: Trigger) -> str:
    # GitHub turns the heading "## CanaryErrorRateHigh" into the anchor #canaryerrorratehigh
    return f"{plan.runbook_url}#{trigger.alert.lower()}"


def probes_missing_after(plan: Plan, trigger: Trigger) -> float:
    """Age of the last probe after which an endpoint counts as not probed.

    The last-probe timestamp normally ages up to one probe interval plus the probe's timeout,
    and Prometheus sees it up to one scrape later; three intervals (or that sum plus a second
    scrape, if larger) leaves room for one late probe without paging.
    """
    if trigger.threshold is not None:
        return trigger.threshold
    p, s = plan.probe, plan.prometheus.scrape_interval
    return max(3 * p.interval, p.interval + p.timeout + 2 * s)


# -- recording rules -----------------------------------------------------------------------


def recording_rules(window: float) -> list[RecordingRule]:
    W = w(window)
    out: list[RecordingRule] = []
    for level, by in LEVELS:
        sel_all = f"canary_probes_total{{{COUNTED}}}"
        out.append(RecordingRule(probes(level, window), f"sum by ({by}) (rate({sel_all}[{W}]))"))
        for outcome in ("success", "error", "null"):
            sel = f'canary_probes_total{{outcome="{outcome}"}}'
            out.append(RecordingRule(probes(level, window, outcome), f"sum by ({by}) (rate({sel}[{W}]))"))
        # numerator and denominator are aggregated first, then divided (never average ratios)
        out.append(RecordingRule(
            ratio(level, "error_ratio", window),
            f"{probes(level, window, 'error')}\n/\n{probes(level, window)}",
        ))
        out.append(RecordingRule(
            ratio(level, "availability", window),
            f"{probes(level, window, 'success')}\n/\n{probes(level, window)}",
        ))
        out.append(RecordingRule(
            latency(level, "avg", window),
            f"sum by ({by}) (rate(canary_probe_duration_seconds_sum[{W}]))\n/\n"
            f"sum by ({by}) (rate(canary_probe_duration_seconds_count[{W}]))",
        ))
        for stat, q in QUANTILES:
            out.append(RecordingRule(
                latency(level, stat, window),
                f"histogram_quantile({q}, sum by ({by}, le) "
                f"(rate(canary_probe_duration_seconds_bucket[{W}])))",
            ))
    return out


def gate_rules(plan: Plan) -> list[RecordingRule]:
    """Per phase and track: does the track meet each success criterion now (1) or not (0)."""
    phases = [(ph.name, ph.criteria) for ph in plan.phases] or [("slos", plan.slos)]
    answering_window = min(plan.windows())
    n_endpoints = len(plan.endpoints)
    out: list[RecordingRule] = []
    for name, c in phases:
        win = c.window
        exprs = {
            "availability": f"{ratio('track', 'availability', win)} >= bool {_num(c.availability)}",
            "avg_latency": f"{latency('track', 'avg', win)} < bool {_num(c.avg_latency)}",
            "error_rate": f"{ratio('track', 'error_ratio', win)} < bool {_num(c.error_rate)}",
            "p95_latency": f"{latency('track', 'p95', win)} < bool {_num(c.p95_latency)}",
            "p99_latency": f"{latency('track', 'p99', win)} < bool {_num(c.p99_latency)}",
        }
        if c.all_endpoints_answering:
            ok = probes("track_endpoint", answering_window, "success")
            exprs["all_endpoints_answering"] = (
                f"(\n  count by (track) ({ok} > 0)\n  or\n  0 * group by (track) ({ok})\n)"
                f"\n>= bool {n_endpoints}"
            )
        for criterion, expr in exprs.items():
            out.append(RecordingRule(GATE_OK, expr, {"phase": name, "criterion": criterion}))
    out.append(RecordingRule(GATE_ALL_OK, f"min by (track, phase) ({GATE_OK})"))
    return out


# -- alerting rules ------------------------------------------------------------------------


def alert_rules(plan: Plan, trigger: Trigger) -> list[AlertRule]:
    t = trigger
    win = plan.trigger_window(t)
    W = w(win)
    tracks = f'track=~"{_tracks(plan.trigger_tracks(t))}"'
    value = "{{ $value | " + VALUE_FORMAT[t.kind] + " }}"
    where = "{{ $labels.endpoint }} on {{ $labels.track }}"
    thr = t.threshold
    then = f"Action: {t.action}."
    labels = {"severity": t.severity, "trigger": t.name, "action": t.action}
    rules: list[tuple[str, str, str, dict[str, str]]] = []  # expr, summary, description, extra labels

    if t.kind in ("error_rate", "availability"):
        n = plan.min_probes(t)
        if t.kind == "error_rate":
            level, what, cmp_, word = "track_endpoint", "error_ratio", ">", "above"
            on, scope = "track, endpoint", where
        else:
            level, what, cmp_, word = "track", "availability", "<", "below"
            on, scope = "track", "{{ $labels.track }}"
        expr = (
            f"{ratio(level, what, win)}{{{tracks}}} {cmp_} {_num(thr)}\n"
            f"and on ({on})\n"
            f"round({probes(level, win)}{{{tracks}}} * {_num(win)}) >= {n}"
        )
        name = "error rate" if t.kind == "error_rate" else "availability"
        rules.append((
            expr,
            f"{scope}: {name} {word} {_pct(thr)}",
            f"The {name} of {scope} is {value} over the last {W} "
            f"(threshold {_pct(thr)}, judged once the window holds at least {n} probes). {then}",
            {},
        ))
    elif t.kind == "latency_avg":
        held = f" for {w(t.for_)}" if t.for_ else ""
        rules.append((
            f"{latency('track_endpoint', 'avg', win)}{{{tracks}}} > {_num(thr)}",
            f"{where}: average latency above {_seconds_text(thr)}{held}",
            f"The average probe latency of {where} is {value} over the last {W} "
            f"(threshold {_seconds_text(thr)}{held}). {then}",
            {},
        ))
    elif t.kind == "null_streak":
        n = int(thr)
        rules.append((
            f"max_over_time(canary_probe_null_streak{{{tracks}}}[{W}]) > {n}",
            f"{where}: more than {n} null responses in a row",
            f"{where} answered {value} probes in a row with a null result or null required "
            f"fields within the last {W} (threshold: more than {n}). {then}",
            {},
        ))
    elif t.kind == "pii_exposure":
        n = int(thr or 0)
        any_ = "any PII exposure" if n == 0 else f"more than {n} PII exposures"
        rules.append((
            f"sum by (track, endpoint) (increase(canary_probe_pii_exposures_total{{{tracks}}}[{W}])) "
            f"> {n}",
            f"{where}: PII in responses",
            f"{where} returned {value} response(s) containing personal data (email, SSN, phone or "
            f"card number) in the last {W}; this trigger fires on {any_}. {then}",
            {},
        ))
    elif t.kind == "probes_missing":
        job = plan.prometheus.job
        up_down = f'up{{job="{job}"}} == 0'
        age = probes_missing_after(plan, t)
        all_tracks = f'track=~"{_tracks(t.tracks or [x.name for x in plan.targets])}"'
        rules.append((
            up_down,
            "canary-guard exporter {{ $labels.instance }} is down",
            "Prometheus cannot scrape the canary-guard exporter {{ $labels.instance }} "
            f'(job "{job}"): there is no probe data, so no rollback trigger can fire. '
            f"No data is not a failure: this pages and never rolls back. {then}",
            {"reason": "exporter_down"},
        ))
        # a series still at 0 has not been probed since the exporter (re)started: not stale yet
        last = f"canary_probe_last_timestamp_seconds{{{all_tracks}}}"
        rules.append((
            f"time() - {last} > {_num(age)} and {last} > 0",
            f"{where}: not probed for more than {w(age)}",
            f"The last probe of {where} was {value} ago (expected every "
            f"{w(plan.probe.interval)}; limit {w(age)}). Its triggers are blind until probes "
            f"resume. No data is not a failure: this pages and never rolls back. {then}",
            {"reason": "stale"},
        ))
        watched = t.tracks or [x.name for x in plan.targets]
        absent = "\nor\n".join(
            f'absent(canary_probe_last_timestamp_seconds{{track="{x}"}})' for x in watched
        )
        rules.append((
            f"(\n{absent}\n)\nunless on () ({up_down})" if len(watched) > 1
            else f"{absent}\nunless on () ({up_down})",
            "no probe data for track {{ $labels.track }}",
            "Prometheus has no canary_probe_last_timestamp_seconds for track {{ $labels.track }}: "
            f'the exporter is not scraped (job "{job}") or does not probe this track. No data is '
            f"not a failure: this pages and never rolls back. {then}",
            {"reason": "absent"},
        ))
    elif t.kind == "custom":
        rules.append((
            t.expr.strip(),
            f"{t.alert} ({t.name})",
            f"Custom trigger {t.name} fired with value {value}. {then}",
            {},
        ))

    out = []
    for expr, summary, description, extra in rules:
        for_ = t.for_
        if extra.get("reason") in ("exporter_down", "absent"):
            # one failed scrape, or a Prometheus that has not scraped yet, is not "missing"
            for_ = max(for_, 2 * plan.prometheus.scrape_interval)
        out.append(AlertRule(
            alert=t.alert,
            expr=expr,
            for_=for_,
            labels={**labels, **extra},
            annotations={
                "summary": t.summary or summary,
                "description": t.description or description,
                "runbook_url": runbook_url(plan, t),
            },
        ))
    return out


def build_groups(plan: Plan) -> list[RuleGroup]:
    """Recording rules, phase gates and alerts, in the order Prometheus should evaluate them."""
    interval = plan.prometheus.evaluation_interval
    prefix = f"canary-guard-{plan.name}"
    recording = [r for win in plan.windows() for r in recording_rules(win)]
    alerts = [a for t in plan.triggers for a in alert_rules(plan, t)]
    groups = [
        RuleGroup(f"{prefix}-recording", interval, recording),
        RuleGroup(f"{prefix}-gates", interval, gate_rules(plan)),
    ]
    if alerts:
        groups.append(RuleGroup(f"{prefix}-alerts", interval, alerts))
    return groups


def group_names(plan: Plan) -> list[str]:
    return [g.name for g in build_groups(plan)]
