"""The shared-cause alert: a guarded track and its baseline breach the same trigger at once.

A baseline-aware trigger rolls back only when the guarded track breaches and the baseline does
not (``kinds/base.py``). When both breach, the cause is shared and a rollback would not help:
this one alert pages instead. It is built from the breaches every baseline-aware trigger
records (``names.breach``): one alert per guarded track and endpoint, however many triggers
the endpoint breaches (error rate and null streak from one cause page once); a breach of a
whole-track trigger (availability) pages per track, unless an endpoint of that track already
pages. Like gates.py, this module owns its rule and its promtool tests side by side.
"""

from __future__ import annotations

from canary_guard import contract
from canary_guard.plan import Plan

from . import kinds, names, notify
from .cases import Cases
from .model import AlertRule
from .promql import tracks_matcher
from .promtest import AlertCheck, UnitTest
from .templating import expand, literal

REASON = "shared_cause"


def _terms(plan: Plan, level: str) -> list[str]:
    out = []
    for ctx in kinds.contexts(plan):
        if ctx.baseline is None or ctx.unit.level != level:
            continue
        guarded = f'{names.breach(level)}{{trigger="{ctx.trigger.name}", {tracks_matcher(ctx.tracks)}}}'
        out.append(f"(\n  {guarded}\n  and on ({names.matched_on(level)})\n  {ctx.baseline_breached()}\n)")
    return out


def compared(plan: Plan) -> list[str]:
    """``error_rate vs stable``, ... for every baseline-aware trigger."""
    return [f"{c.trigger.name} vs {c.baseline}" for c in kinds.contexts(plan) if c.baseline]


def labels(plan: Plan) -> dict[str, str]:
    out = {contract.ALERT_SEVERITY: plan.shared_cause.severity, contract.REASON: REASON}
    action = plan.shared_cause_action()
    if action:
        out[contract.ALERT_ACTION] = action
    return out


def texts(plan: Plan) -> dict[str, str]:
    sc = plan.shared_cause
    action = plan.shared_cause_action()
    return {
        "summary": "{{ $labels.track }} and its baseline both failing {{ $labels.endpoint }}: "
                   "a shared cause; a rollback would not help",
        "description": (
            "Track {{ $labels.track }} and its baseline breach the same trigger at the same time "
            "(endpoint: {{ $labels.endpoint }}; empty: the whole track). Triggers compared: "
            + ", ".join(compared(plan)) + ". The cause is shared: the service's dependencies, "
            "the machine, or the plan itself (a check the baseline fails too). Nothing was "
            "rolled back. Look at the baseline first; `canary-guard plan check --against URL` "
            "names the plan's checks that fail on it."
        ),
        "runbook_url": literal(f"{plan.runbook_url}#{sc.alert.lower()}"),
        # read by the people's notification template (rules/notify.py)
        "webhook_action": literal(notify.action_summary(plan, action) if action else
                                  "none: no page action in the plan; nothing is rolled back"),
    }


def alert_rules(plan: Plan) -> list[AlertRule]:
    endpoint_terms = _terms(plan, names.TRACK_ENDPOINT)
    track_terms = _terms(plan, names.TRACK)
    if not endpoint_terms and not track_terms:
        return []
    per_endpoint = ("max by (track, endpoint) (\n" + "\nor\n".join(endpoint_terms) + "\n)"
                    if endpoint_terms else "")
    per_track = "max by (track) (\n" + "\nor\n".join(track_terms) + "\n)" if track_terms else ""
    if per_endpoint and per_track:
        expr = f"{per_endpoint}\nor\n(\n{per_track}\nunless on (track)\n{per_endpoint}\n)"
    else:
        expr = per_endpoint or per_track
    return [AlertRule(
        alert=plan.shared_cause.alert, expr=expr, for_=0.0, labels=labels(plan),
        annotations=texts(plan),
        # the two tracks' windows drain a probe apart: one page, not a flap
        keep_firing_for=plan.baseline_grace(),
    )]


def expect(plan: Plan, series: dict[str, str]) -> dict:
    """The shared-cause alert of a track (and endpoint) as promtool expects it."""
    all_labels = {**series, **labels(plan)}
    return {
        "exp_labels": all_labels,
        "exp_annotations": {k: expand(v, all_labels, 1.0) for k, v in texts(plan).items()},
    }


def test_cases(plan: Plan, cases: Cases) -> list[UnitTest]:
    """One cause, several triggers: an endpoint failing every probe on both tracks breaches the
    error rate (that endpoint) and the availability (the track) on both: one page for the
    endpoint, none for the track, no rollback."""
    ctxs = {c.trigger.kind: c for c in kinds.contexts(plan)
            if c.baseline and c.trigger.source == "probe"}  # the case feeds probe series
    if "error_rate" not in ctxs or "availability" not in ctxs:
        return []
    err, avail = ctxs["error_rate"], ctxs["availability"]
    track, base = err.tracks[0], err.baseline
    if avail.baseline != base or track not in avail.tracks or base is None:
        return []
    n = max(cases.steps(c.window) for c in (err, avail)) + 3 + cases.steps(plan.baseline_grace())
    at = cases.eval_at(n * cases.s)
    first = plan.endpoints[0].name
    series = []
    for t in (track, base):
        for e in plan.endpoints:
            outcome = contract.ERROR if e.name == first else contract.SUCCESS
            series += cases.probe_series(t, e.name, n, {outcome: 1})
    return [UnitTest(
        f"{plan.shared_cause.alert}: {first} failing on {track} and {base}: one page for the "
        f"endpoint (error rate and availability from one cause), no rollback",
        cases.s, series,
        [AlertCheck(at, plan.shared_cause.alert, [expect(plan, {"track": track, "endpoint": first})]),
         *cases.none_of(cases.rollback_alerts(), at)],
    )]
