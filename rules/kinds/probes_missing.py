"""``probes_missing``: the exporter is down, an endpoint was not probed lately, or a track has
no data at all. No data is not a failure: these alerts page and never roll back."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from canary_guard import contract
from canary_guard.durations import format_duration
from canary_guard.plan import Plan, Trigger

from .. import names
from ..model import AlertRule
from ..promql import absent_for, num, selector, tracks_matcher
from ..promtest import AlertCheck, Series, UnitTest, cumulative, encode
from ..templating import literal
from .base import WHERE, Context, TriggerUnit

if TYPE_CHECKING:
    from ..cases import Cases

# the rules, in this order; the reason label tells them apart
EXPORTER_DOWN, STALE, ABSENT = "exporter_down", "stale", "absent"
EXPORTER_INSTANCE = "canary-guard-exporter:9111"  # the instance label the tests give the exporter


def probes_missing_after(plan: Plan, trigger: Trigger) -> float:
    """Age of the last probe after which an endpoint counts as not probed.

    The last-probe timestamp normally ages up to one probe interval plus the longest probe timeout,
    and Prometheus sees it up to one scrape later; three intervals (or that sum plus a second
    scrape, if larger) leaves room for one late probe without paging.
    """
    if trigger.threshold is not None:
        return trigger.threshold
    p, s = plan.probe, plan.prometheus.scrape_interval
    return max(3 * p.interval, p.interval + plan.max_probe_timeout() + 2 * s)


# the labels of the "many endpoints stale" alert: one per exporter (shard) and track
GROUPED = "job, instance, track"


def replace(rule: AlertRule, annotations_value: str) -> AlertRule:
    """``rule`` with another ``value`` annotation (a count here, not a duration)."""
    return dataclasses.replace(rule, annotations={**rule.annotations, "value": annotations_value})


class ProbesMissing(TriggerUnit):
    kind = "probes_missing"
    value_format = "humanizeDuration"
    judges_probes = False  # it fires on the absence of data

    def watched(self, ctx: Context) -> list[str]:
        """Every target unless the trigger names tracks: a missing stable blinds comparisons too."""
        return list(ctx.trigger.tracks or [x.name for x in ctx.plan.targets])

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        plan, t = ctx.plan, ctx.trigger
        job = plan.prometheus.job
        up_down = f'{selector("up", job=job)} == 0'
        age = probes_missing_after(plan, t)
        watched = self.watched(ctx)
        # one failed scrape, or a Prometheus that has not scraped yet, is not "missing"
        hold = max(t.for_, 2 * plan.prometheus.scrape_interval)
        # a series still at 0 has not been probed since the exporter (re)started: not stale yet
        last = f"{contract.LAST_PROBE}{{{tracks_matcher(watched)}}}"
        absent = "\nor\n".join(
            f"absent({selector(contract.LAST_PROBE, track=x)})" for x in watched
        )
        no_data = "No data is not a failure: this pages and never rolls back."
        stale = f"(time() - {last} > {num(age)} and {last} > 0)"
        # several endpoints at once means the exporter is behind its schedule (or down to a
        # crawl): one page per exporter and track, not one per endpoint (1,000 pages flood
        # Alertmanager and the webhook while a rollback is due: bench/bench_scale.py)
        many = f"count by ({GROUPED}) {stale} > 1"
        return [
            ctx.alert(
                up_down,
                "canary-guard exporter {{ $labels.instance }} is down",
                "Prometheus cannot scrape the canary-guard exporter {{ $labels.instance }} "
                f'(job "{literal(job)}"): there is no probe data, so no rollback trigger can fire. '
                f"{no_data} {ctx.then}",
                labels={contract.REASON: EXPORTER_DOWN}, for_=hold,
            ),
            ctx.alert(
                f"{stale}\nunless on ({GROUPED})\n({many})",
                f"{WHERE}: not probed for more than {names.w(age)}",
                f"The last probe of {WHERE} was {ctx.value} ago (expected every "
                f"{names.w(plan.probe.interval)}; limit {names.w(age)}). Its triggers are blind until "
                f"probes resume. {no_data} {ctx.then}",
                labels={contract.REASON: STALE},
            ),
            ctx.alert(
                f"(\n{absent}\n)\nunless on () ({up_down})" if len(watched) > 1
                else f"{absent}\nunless on () ({up_down})",
                "no probe data for track {{ $labels.track }}",
                f"Prometheus has no {contract.LAST_PROBE} for track {{{{ $labels.track }}}}: "
                f'the exporter is not scraped (job "{literal(job)}") or does not probe this track. '
                f"{no_data} {ctx.then}",
                labels={contract.REASON: ABSENT}, for_=max(t.for_, absent_for(plan)),
            ),
            replace(ctx.alert(
                many,
                "{{ $value | humanize }} endpoints of track {{ $labels.track }} not probed for more than "
                f"{names.w(age)}",
                "{{ $value | humanize }} endpoints of track {{ $labels.track }} were last probed more than "
                f"{names.w(age)} ago by exporter {{{{ $labels.instance }}}} (expected every "
                f"{names.w(plan.probe.interval)}): it is behind its schedule. Their triggers are "
                "blind until probes resume. See canary_probe_skipped_total: give it more CPU, "
                "shard it (--shard K/N) or probe less often. "
                f"{no_data} {ctx.then}",
                labels={contract.REASON: STALE},
            ), annotations_value="{{ $value | humanize }}"),
        ]

    def test_cases(self, ctx: Context, cases: Cases) -> list[UnitTest]:
        plan, t = ctx.plan, ctx.trigger
        track, ep = ctx.tracks[0], plan.endpoints[0].name
        s = cases.s
        up = selector("up", job=plan.prometheus.job, instance=EXPORTER_INSTANCE)
        age = probes_missing_after(plan, t)
        healthy = cases.steps(max(plan.windows()[:1] + [age])) + 4
        gap = cases.steps(age) + 4
        n = healthy + gap
        no_rollback = cases.rollback_alerts()
        others = [x for x in self.watched(ctx) if x != track]
        last_probe = selector(contract.LAST_PROBE, track=track, endpoint=ep)
        dur = contract.PROBE_DURATION

        def fresh(upto: int, after: str = "") -> list[Series]:
            return [Series(selector(contract.LAST_PROBE, track=x, endpoint=ep),
                           encode([i * s for i in range(upto + 1)]) + after) for x in others]

        # probes stop (the exporter is up but its probes hang): the last-probe time ages
        vals_count = cumulative([1] * healthy + [0] * gap)
        stop = [
            Series(up, encode([1] * (n + 1))),
            Series(last_probe, encode([i * s for i in range(healthy + 1)] + [healthy * s] * gap)),
            *cases.probe_series(track, ep, n, {contract.SUCCESS: [1] * healthy + [0] * gap}),
            Series(selector(f"{dur}_count", track=track, endpoint=ep), encode(vals_count)),
            Series(selector(f"{dur}_sum", track=track, endpoint=ep), encode([v * 0.1 for v in vals_count])),
            *fresh(n),
        ]
        last = healthy * s
        stale_at = cases.eval_at(last + age + s)
        out = [UnitTest(
            f"{t.alert}: probes stop for {format_duration(stale_at - last)}: page, no rollback",
            s, stop,
            [AlertCheck(cases.eval_at(last + age) - cases.e, t.alert, []),
             AlertCheck(stale_at, t.alert, [cases.expect(ctx, {"track": track, "endpoint": ep},
                                                         stale_at - last, 1)]),
             *cases.none_of(no_rollback, stale_at)],
        )]
        # the exporter falls behind: several endpoints of the track age at once; one page
        if len(plan.endpoints) > 1:
            ep2 = plan.endpoints[1].name
            behind = [*stop, Series(selector(contract.LAST_PROBE, track=track, endpoint=ep2),
                                    encode([i * s for i in range(healthy + 1)] + [healthy * s] * gap))]
            out.append(UnitTest(
                f"{t.alert}: two endpoints not probed for {format_duration(stale_at - last)}: "
                "one page for the track, no rollback",
                s, behind,
                [AlertCheck(cases.eval_at(last + age) - cases.e, t.alert, []),
                 AlertCheck(stale_at, t.alert, [cases.expect(ctx, {"track": track}, 2, 3)]),
                 *cases.none_of(no_rollback, stale_at)],
            ))
        # the exporter goes down: up == 0 and its series go stale
        down_series = [
            Series(up, encode([1] * (healthy + 1) + [0] * gap)),
            Series(last_probe, encode([i * s for i in range(healthy + 1)]) + " stale"),
            *[Series(x.selector, x.values + " stale")
              for x in cases.probe_series(track, ep, healthy, {contract.SUCCESS: 1})],
            *fresh(healthy, " stale"),
        ]
        # the exporter_down rule waits two scrapes (alert_rules above)
        hold = max(t.for_, 2 * plan.prometheus.scrape_interval)
        at = cases.eval_at((healthy + 1) * s + hold)
        down = cases.expect(ctx, {"job": plan.prometheus.job, "instance": EXPORTER_INSTANCE}, 0, 0)
        out.append(UnitTest(
            f"{t.alert}: exporter down: page, no rollback",
            s, down_series,
            [AlertCheck(cases.eval_at(healthy * s) - cases.e, t.alert, []),
             AlertCheck(at - cases.e, t.alert, []),
             AlertCheck(at, t.alert, [down]),
             AlertCheck(cases.eval_at(n * s), t.alert, [down]),
             *cases.none_of(no_rollback, cases.eval_at(n * s))],
        ))
        # nothing at all for a watched track (not scraped, or the exporter runs another plan);
        # it waits as long as a Prometheus that just started needs for its first scrapes
        wait = max(t.for_, absent_for(plan))
        quiet = cases.steps(wait) + 4
        out.append(UnitTest(
            f"{t.alert}: no data for track {track}: page, no rollback",
            s, [Series(up, encode([1] * (quiet + 1))), *fresh(quiet)],
            [AlertCheck(cases.eval_at(wait) - cases.e, t.alert, []),
             AlertCheck(cases.eval_at(wait), t.alert, [cases.expect(ctx, {"track": track}, 1, 2)]),
             *cases.none_of(no_rollback, cases.eval_at(wait))],
        ))
        return out
