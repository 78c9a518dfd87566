"""Plan -> ``promtool test rules`` cases: every trigger at its boundary.

Each case feeds synthetic exporter series (the metric contract) through the generated rules and
states which alerts fire, with their exact labels and annotations. Series are built so that the
expected values do not depend on how Prometheus extrapolates ``rate()`` at window edges: ratios
come from uniform data, latencies from windows whose every probe is slow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from canary_guard.durations import format_duration
from canary_guard.plan import Plan, Trigger

from . import spec


@dataclass
class Series:
    selector: str
    values: str


@dataclass
class AlertCheck:
    eval_time: float
    alertname: str
    exp_alerts: list[dict]  # {"exp_labels": {...}, "exp_annotations": {...}}


@dataclass
class ExprCheck:
    eval_time: float
    expr: str
    exp_samples: list[dict]  # {"labels": 'name{a="b"}', "value": float}


@dataclass
class UnitTest:
    name: str
    interval: float
    input_series: list[Series] = field(default_factory=list)
    alert_checks: list[AlertCheck] = field(default_factory=list)
    expr_checks: list[ExprCheck] = field(default_factory=list)


# -- Prometheus's template functions, for the expected annotations -------------------------


def _g4(v: float) -> str:
    """Go's ``%.4g``."""
    text = f"{v:.4g}"
    if "e" in text:
        mant, exp = text.split("e")
        sign, digits = exp[0], exp[1:].lstrip("0")
        text = f"{mant}e{sign}{digits.rjust(2, '0')}"
    return text


def humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return _g4(v) + prefix
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return _g4(v) + prefix


def humanize_percentage(v: float) -> str:
    return _g4(v * 100) + "%"


def humanize_duration(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return f"{_g4(v)}s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        seconds, minutes = int(v) % 60, int(v) // 60 % 60
        hours, days = int(v) // 3600 % 24, int(v) // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g4(v)}{prefix}s"


FORMATTERS = {
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
    "humanize": humanize,
    'printf "%.0f"': lambda v: f"{round(v):d}",
}


def _stable(fmt: str, value: float) -> bool:
    """True when float noise in Prometheus's arithmetic cannot change the formatted value."""
    f = FORMATTERS[fmt]
    return f(value * (1 - 1e-9)) == f(value) == f(value * (1 + 1e-9))


def expand(text: str, labels: dict[str, str], value: float, fmt: str) -> str:
    text = text.replace("{{ $value | " + fmt + " }}", FORMATTERS[fmt](value))
    for k, v in labels.items():
        text = text.replace("{{ $labels." + k + " }}", v)
    return text


# -- series --------------------------------------------------------------------------------


def _num(v: float) -> str:
    if v == int(v):
        return str(int(v))
    return repr(float(v))


def encode(values: list[float | None]) -> str:
    """promtool's series notation: runs with a constant step become ``a+bxn``, gaps ``_``."""
    out: list[str] = []
    i = 0
    while i < len(values):
        v = values[i]
        if v is None:
            j = i
            while j + 1 < len(values) and values[j + 1] is None:
                j += 1
            out.append("_" if j == i else f"_x{j - i + 1}")
            i = j + 1
            continue
        j = i
        if i + 1 < len(values) and values[i + 1] is not None:
            step = Fraction(values[i + 1]) - Fraction(v)
            while (j + 1 < len(values) and values[j + 1] is not None
                   and Fraction(values[j + 1]) - Fraction(values[j]) == step):
                j += 1
            if j - i >= 2:
                sign = "+" if step >= 0 else "-"
                out.append(f"{_num(v)}{sign}{_num(abs(float(step)))}x{j - i}")
                i = j + 1
                continue
        out.append(_num(v))
        i += 1
    return " ".join(out)


def cumulative(increments: list[float]) -> list[float]:
    out, total = [0.0], Fraction(0)
    for inc in increments:
        total += Fraction(inc)
        out.append(float(total))
    return out


def sel(metric: str, **labels: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


# -- the cases -----------------------------------------------------------------------------


class _Builder:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.s = plan.prometheus.scrape_interval
        self.e = plan.prometheus.evaluation_interval
        self.tests: list[UnitTest] = []

    # helpers ------------------------------------------------------------------------------

    def steps(self, seconds: float) -> int:
        return math.ceil(seconds / self.s - 1e-9)

    def eval_at(self, t: float) -> float:
        """The first rule evaluation at or after t."""
        return math.ceil(t / self.e - 1e-9) * self.e

    def probe_series(self, track: str, ep: str, n: int, per_step: dict[str, list[float] | float]):
        out = []
        for outcome in ("success", "error", "null", "disabled"):
            inc = per_step.get(outcome, 0)
            incs = inc if isinstance(inc, list) else [inc] * n
            out.append(Series(sel("canary_probes_total", track=track, endpoint=ep, outcome=outcome),
                              encode(cumulative(incs))))
        return out

    def alert(self, t: Trigger, labels: dict[str, str], value: float, rule_index: int = 0) -> dict:
        rule = spec.alert_rules(self.plan, t)[rule_index]
        fmt = spec.VALUE_FORMAT[t.kind]
        all_labels = {**labels, **rule.labels}
        return {
            "exp_labels": all_labels,
            "exp_annotations": {k: expand(v, all_labels, value, fmt) for k, v in rule.annotations.items()},
        }

    def rollback_alerts(self) -> list[str]:
        """Alert names whose action is not a page: these must never fire on no-data or stable."""
        out = []
        for t in self.plan.triggers:
            action = self.plan.actions.get(t.action)
            if t.kind not in ("probes_missing", "custom") and getattr(action, "kind", "") != "page":
                out.append(t.alert)
        return list(dict.fromkeys(out))

    def none_of(self, alerts: list[str], at: float) -> list[AlertCheck]:
        return [AlertCheck(at, a, []) for a in dict.fromkeys(alerts)]

    def unguarded(self, t: Trigger) -> str | None:
        watched = set(self.plan.trigger_tracks(t))
        return next((x.name for x in self.plan.targets if x.name not in watched), None)

    # ratio triggers -----------------------------------------------------------------------

    def ratio(self, t: Trigger) -> None:
        plan, win = self.plan, self.plan.trigger_window(t)
        track, ep = plan.trigger_tracks(t)[0], plan.endpoints[0].name
        is_err = t.kind == "error_rate"
        margin = Fraction(str(t.threshold)) if is_err else 1 - Fraction(str(t.threshold))
        n = self.steps(win) + 3
        at = self.eval_at(n * self.s)
        labels = {"track": track, "endpoint": ep} if is_err else {"track": track}
        what = "error rate" if is_err else "availability"
        bad = "error" if is_err else "null"  # nulls are not errors but do cost availability

        def case(frac: Fraction) -> dict[str, float]:
            f, c = frac.numerator, frac.denominator
            return {"success": c - f, bad: f}

        self.tests.append(UnitTest(
            f"{t.alert}: {what} exactly at {_pct(t.threshold)} does not fire",
            self.s, self.probe_series(track, ep, n, case(margin)),
            [AlertCheck(at, t.alert, [])],
        ))
        for mult in (Fraction(5, 4), Fraction(3, 2), Fraction(2), Fraction(3)):
            over = margin * mult
            if over >= 1:
                continue
            value = float(over if is_err else 1 - over)
            if _stable(spec.VALUE_FORMAT[t.kind], value):
                break
        self.tests.append(UnitTest(
            f"{t.alert}: {what} of {_pct(value)} fires",
            self.s, self.probe_series(track, ep, n, case(over)),
            [AlertCheck(at, t.alert, [self.alert(t, labels, value)])],
        ))
        # one failure among too few probes: the ratio is far past the threshold, but no alert
        need = plan.min_probes(t)
        if need >= 4:
            k = need // 2
            incs = {"success": [1] * (k - 1) + [0], bad: [0] * (k - 1) + [1]}
            self.tests.append(UnitTest(
                f"{t.alert}: 1 failed probe out of {k} (< min_probes {need}) does not fire",
                self.s, self.probe_series(track, ep, k, incs),
                [AlertCheck(self.eval_at(k * self.s), t.alert, [])],
            ))
        # feature-flag 503s (outcome disabled) are neither errors nor missing availability
        feat = next((e for e in plan.endpoints if e.feature), None)
        if feat:
            self.tests.append(UnitTest(
                f"{t.alert}: disabled feature {feat.feature} answering 503 does not count",
                self.s, self.probe_series(track, feat.name, n, {"success": 1, "disabled": 20}),
                [AlertCheck(at, t.alert, [])],
                [ExprCheck(at, spec.ratio(
                    "track_endpoint", "error_ratio" if is_err else "availability", win
                ) + f'{{track="{track}",endpoint="{feat.name}"}}', [{
                    "labels": spec.ratio("track_endpoint", "error_ratio" if is_err else "availability", win)
                    + f'{{endpoint="{feat.name}", track="{track}"}}',
                    "value": 0 if is_err else 1,
                }])],
            ))
        other = self.unguarded(t)
        if other:
            self.tests.append(UnitTest(
                f"{t.alert}: the same breach on unguarded track {other} rolls nothing back",
                self.s, self.probe_series(other, ep, n, case(over)),
                self.none_of([t.alert, *self.rollback_alerts()], at),
            ))

    # latency ------------------------------------------------------------------------------

    def latency_series(self, track: str, ep: str, lat: list[float | None]) -> list[Series]:
        """One probe per scrape with the given latencies (None: no probe in that scrape)."""
        counts = [0 if x is None else 1 for x in lat]
        sums = [0 if x is None else x for x in lat]
        return [
            Series(sel("canary_probe_duration_seconds_count", track=track, endpoint=ep),
                   encode(cumulative(counts))),
            Series(sel("canary_probe_duration_seconds_sum", track=track, endpoint=ep),
                   encode(cumulative(sums))),
        ]

    def latency(self, t: Trigger) -> None:
        plan, win, thr = self.plan, self.plan.trigger_window(t), t.threshold
        track, ep = plan.trigger_tracks(t)[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        fill = self.steps(win) + 2
        # threshold: a window of probes at exactly the threshold, then one just above
        n = fill + self.steps(t.for_) + 2
        at = self.eval_at(n * self.s)
        slow = float(Fraction(str(thr)) * Fraction(5, 4))
        # a threshold that binary floats hold exactly (1s, 500ms) is tested exactly; others
        # (400ms) just below, since summing 0.4s probes drifts above 0.4 in any Prometheus
        exact = Fraction(str(thr)) == Fraction(thr)
        at_thr = thr if exact else float(Fraction(str(thr)) * Fraction(999, 1000))
        self.tests.append(UnitTest(
            f"{t.alert}: average latency {'exactly' if exact else 'just below'} "
            f"{spec._seconds_text(thr)} does not fire",
            self.s, self.latency_series(track, ep, [at_thr] * n), [AlertCheck(at, t.alert, [])],
        ))
        self.tests.append(UnitTest(
            f"{t.alert}: average latency {spec._seconds_text(slow)} fires",
            self.s, self.latency_series(track, ep, [slow] * n),
            [AlertCheck(at, t.alert, [self.alert(t, labels, slow)])],
        ))
        if not t.for_:
            return
        # duration: no probes, then every probe slow; the condition holds from the first slow
        # scrape on, so the alert stays pending until `for` has passed since then
        quiet = fill
        start = self.eval_at(quiet * self.s)
        fire = self.eval_at(start + t.for_)
        total = self.steps(fire) + 2
        lat = [None] * (quiet - 1) + [2 * thr] * (total - quiet + 1)
        series = self.latency_series(track, ep, lat)
        slow_text = f"{format_duration(t.for_ - 1)}"
        self.tests.append(UnitTest(
            f"{t.alert}: {slow_text} of slow latency does not fire, {format_duration(t.for_)} does",
            self.s, series,
            [
                AlertCheck(start - self.e, t.alert, []),
                AlertCheck(start + t.for_ - 1, t.alert, []),
                AlertCheck(fire, t.alert, [self.alert(t, labels, 2 * thr)]),
            ],
        ))
        other = self.unguarded(t)
        if other:
            self.tests.append(UnitTest(
                f"{t.alert}: slow latency on unguarded track {other} rolls nothing back",
                self.s, self.latency_series(other, ep, [2 * thr] * total),
                self.none_of([t.alert, *self.rollback_alerts()], fire),
            ))

    # null streak --------------------------------------------------------------------------

    def null_streak(self, t: Trigger) -> None:
        plan, thr = self.plan, int(t.threshold)
        track, ep = plan.trigger_tracks(t)[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        lead = 4
        hold = self.steps(t.for_)
        # streak climbs one null per scrape to thr, then a good answer resets it
        ok_vals = [0] * lead + list(range(1, thr + 1)) + [0] * (hold + 4)
        peak = self.eval_at((lead + thr - 1) * self.s)
        self.tests.append(UnitTest(
            f"{t.alert}: {thr} null responses in a row do not fire",
            self.s, [Series(sel("canary_probe_null_streak", track=track, endpoint=ep), encode(ok_vals))],
            [AlertCheck(peak, t.alert, []), AlertCheck(self.eval_at(peak + t.for_), t.alert, [])],
        ))
        # ... and one more null does
        grow = hold + 4
        bad_vals = [0] * lead + list(range(1, thr + 2)) + [thr + 1] * grow
        first = (lead + thr) * self.s
        fire = self.eval_at(self.eval_at(first) + t.for_)
        self.tests.append(UnitTest(
            f"{t.alert}: {thr + 1} null responses in a row fire",
            self.s, [Series(sel("canary_probe_null_streak", track=track, endpoint=ep), encode(bad_vals))],
            [AlertCheck(self.eval_at(first) - self.e, t.alert, []),
             AlertCheck(fire, t.alert, [self.alert(t, labels, thr + 1)])],
        ))

    # PII ----------------------------------------------------------------------------------

    def pii(self, t: Trigger) -> None:
        plan, thr = self.plan, int(t.threshold or 0)
        track, ep = plan.trigger_tracks(t)[0], plan.endpoints[0].name
        labels = {"track": track, "endpoint": ep}
        lead = self.steps(plan.trigger_window(t)) + 2
        first = lead * self.s
        fire = self.eval_at(self.eval_at(first) + t.for_)
        n = self.steps(fire) + 2
        count = thr + 1
        vals = [0] * lead + [count] * (n - lead + 1)
        series = [Series(sel("canary_probe_pii_exposures_total", track=track, endpoint=ep, kind="email"),
                         encode(vals)),
                  Series(sel("canary_probe_pii_exposures_total", track=track, endpoint=ep, kind="ssn"),
                         encode([0] * (n + 1)))]
        word = "one PII exposure fires" if count == 1 else f"{count} PII exposures fire"
        self.tests.append(UnitTest(
            f"{t.alert}: {word}", self.s, series,
            [AlertCheck(self.eval_at(first) - self.e, t.alert, []),
             AlertCheck(fire, t.alert, [self.alert(t, labels, count)])],
        ))

    # no data ------------------------------------------------------------------------------

    def probes_missing(self, t: Trigger) -> None:
        plan = self.plan
        track, ep = plan.trigger_tracks(t)[0], plan.endpoints[0].name
        job = plan.prometheus.job
        up = sel("up", job=job, instance="canary-guard-exporter:9111")
        age = spec.probes_missing_after(plan, t)
        healthy = self.steps(max(plan.windows()[:1] + [age])) + 4
        gap = self.steps(age) + 4
        n = healthy + gap
        no_rollback = self.rollback_alerts()
        good = {"success": 1}

        tracks = t.tracks or [x.name for x in plan.targets]
        others = [x for x in tracks if x != track]

        def fresh(upto: int, after: str = "") -> list[Series]:
            return [Series(sel("canary_probe_last_timestamp_seconds", track=x, endpoint=ep),
                           encode([i * self.s for i in range(upto + 1)]) + after) for x in others]

        # probes stop (the exporter is up but its probes hang): the last-probe time ages
        vals_count = cumulative([1] * healthy + [0] * gap)
        series = [
            Series(up, encode([1] * (n + 1))),
            Series(sel("canary_probe_last_timestamp_seconds", track=track, endpoint=ep),
                   encode([i * self.s for i in range(healthy + 1)] + [healthy * self.s] * gap)),
            *self.probe_series(track, ep, n, {"success": [1] * healthy + [0] * gap}),
            Series(sel("canary_probe_duration_seconds_count", track=track, endpoint=ep), encode(vals_count)),
            Series(sel("canary_probe_duration_seconds_sum", track=track, endpoint=ep),
                   encode([v * 0.1 for v in vals_count])),
            *fresh(n),
        ]
        last = healthy * self.s
        at = self.eval_at(last + age + self.s)
        rule = 1  # the "stale" rule
        self.tests.append(UnitTest(
            f"{t.alert}: probes stop for {format_duration(at - last)}: page, no rollback",
            self.s, series,
            [AlertCheck(self.eval_at(last + age) - self.e, t.alert, []),
             AlertCheck(at, t.alert, [self.alert(t, {"track": track, "endpoint": ep},
                                                 at - last, rule)]),
             *self.none_of(no_rollback, at)],
        ))
        # the exporter goes down: up == 0 and its series go stale
        series = [
            Series(up, encode([1] * (healthy + 1) + [0] * gap)),
            Series(sel("canary_probe_last_timestamp_seconds", track=track, endpoint=ep),
                   encode([i * self.s for i in range(healthy + 1)]) + " stale"),
            *[Series(s.selector, s.values + " stale")
              for s in self.probe_series(track, ep, healthy, good)],
            *fresh(healthy, " stale"),
        ]
        # the exporter_down and absent rules wait two scrapes (spec.alert_rules)
        hold = max(t.for_, 2 * plan.prometheus.scrape_interval)
        at = self.eval_at((healthy + 1) * self.s + hold)
        down = self.alert(t, {"job": job, "instance": "canary-guard-exporter:9111"}, 0, 0)
        self.tests.append(UnitTest(
            f"{t.alert}: exporter down: page, no rollback",
            self.s, series,
            [AlertCheck(self.eval_at(healthy * self.s) - self.e, t.alert, []),
             AlertCheck(at - self.e, t.alert, []),
             AlertCheck(at, t.alert, [down]),
             AlertCheck(self.eval_at(n * self.s), t.alert, [down]),
             *self.none_of(no_rollback, self.eval_at(n * self.s))],
        ))
        # nothing at all for a watched track (not scraped, or the exporter runs another plan)
        series = [Series(up, encode([1] * (n + 1))), *fresh(n)]
        self.tests.append(UnitTest(
            f"{t.alert}: no data for track {track}: page, no rollback",
            self.s, series,
            [AlertCheck(self.eval_at(hold) - self.e, t.alert, []),
             AlertCheck(self.eval_at(hold), t.alert, [self.alert(t, {"track": track}, 1, 2)]),
             *self.none_of(no_rollback, self.eval_at(hold))],
        ))

    # phase gates ---------------------------------------------------------------------------

    def gates(self) -> None:
        plan = self.plan
        tracks = plan.guarded_tracks() or [plan.targets[0].name]
        track = tracks[0]
        phases = [(ph.name, ph.criteria) for ph in plan.phases] or [("slos", plan.slos)]
        longest = max(c.window for _, c in phases)
        n = self.steps(longest) + 2
        at = self.eval_at(n * self.s)
        crit = [c for _, c in phases]
        lat = min(min(c.avg_latency, c.p95_latency, c.p99_latency) for c in crit) / 2
        bounds = [lat]  # every probe in the first bucket: p95/p99 interpolate below lat
        first = plan.endpoints[0].name

        def series(failing: str | None) -> list[Series]:
            out = []
            for e in plan.endpoints:
                bad = e.name == failing
                out += self.probe_series(track, e.name, n, {"error": 1} if bad else {"success": 1})
                count = encode(cumulative([1] * n))
                out.append(Series(sel("canary_probe_duration_seconds_count", track=track, endpoint=e.name),
                                  count))
                out.append(Series(sel("canary_probe_duration_seconds_sum", track=track, endpoint=e.name),
                                  encode(cumulative([lat] * n))))
                for b in [*bounds, "+Inf"]:
                    le = b if isinstance(b, str) else _num(b)
                    hit = b == "+Inf" or b >= lat
                    out.append(Series(
                        sel("canary_probe_duration_seconds_bucket", track=track, endpoint=e.name, le=le),
                        count if hit else encode([0] * (n + 1))))
            return out

        def samples(failing: bool) -> tuple[list[dict], list[dict]]:
            ok, all_ok = [], []
            for name, c in phases:
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
                    ok.append({"labels": f'{spec.GATE_OK}{{criterion="{criterion}",phase="{name}",'
                                         f'track="{track}"}}', "value": v})
                all_ok.append({"labels": f'{spec.GATE_ALL_OK}{{phase="{name}",track="{track}"}}',
                               "value": min(values.values())})
            return ok, all_ok

        ok, all_ok = samples(False)
        self.tests.append(UnitTest(
            f"phase gates: a healthy {track} meets every criterion of every phase",
            self.s, series(None), [],
            [ExprCheck(at, f'{spec.GATE_OK}{{track="{track}"}}', ok),
             ExprCheck(at, f'{spec.GATE_ALL_OK}{{track="{track}"}}', all_ok)],
        ))
        ok, all_ok = samples(True)
        self.tests.append(UnitTest(
            f"phase gates: {first} failing every probe (1 of {len(plan.endpoints)} endpoints)",
            self.s, series(first), [],
            [ExprCheck(at, f'{spec.GATE_OK}{{track="{track}"}}', ok),
             ExprCheck(at, f'{spec.GATE_ALL_OK}{{track="{track}"}}', all_ok)],
        ))

    def build(self) -> list[UnitTest]:
        for t in self.plan.triggers:
            if t.kind in ("error_rate", "availability"):
                self.ratio(t)
            elif t.kind == "latency_avg":
                self.latency(t)
            elif t.kind == "null_streak":
                self.null_streak(t)
            elif t.kind == "pii_exposure":
                self.pii(t)
            elif t.kind == "probes_missing":
                self.probes_missing(t)
            # custom triggers are raw PromQL: their inputs are unknown, promtool check covers them
        self.gates()
        return self.tests


def _pct(value: float) -> str:
    return f"{value * 100:.4g}%"


def build_tests(plan: Plan) -> list[UnitTest]:
    return _Builder(plan).build()
