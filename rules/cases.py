"""Helpers that trigger units and the phase gates share to build promtool test cases.

Series are built so that the expected values do not depend on how Prometheus extrapolates
``rate()`` at window edges: ratios come from uniform data, latencies from windows whose every
probe is slow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from canary_guard import contract
from canary_guard.plan import Plan

from .promql import selector
from .promtest import AlertCheck, Series, cumulative, encode
from .templating import expand

if TYPE_CHECKING:
    from .kinds.base import Context


class Cases:
    """Timing and series helpers for one plan (its scrape and evaluation intervals)."""

    def __init__(self, plan: Plan, contexts: list[Context]):
        self.plan = plan
        self.contexts = contexts  # every trigger of the plan
        self.s = plan.prometheus.scrape_interval
        self.e = plan.prometheus.evaluation_interval

    def steps(self, seconds: float) -> int:
        """Scrapes needed to cover ``seconds``."""
        return math.ceil(seconds / self.s - 1e-9)

    def eval_at(self, t: float) -> float:
        """The first rule evaluation at or after t."""
        return math.ceil(t / self.e - 1e-9) * self.e

    def probe_series(self, track: str, ep: str, n: int,
                     per_step: dict[str, Sequence[float] | float]) -> list[Series]:
        """canary_probes_total per outcome; per_step: increments per scrape (one value or n)."""
        out = []
        for outcome in contract.OUTCOMES:
            inc = per_step.get(outcome, 0)
            incs = [inc] * n if isinstance(inc, int | float) else inc
            out.append(Series(selector(contract.PROBES, track=track, endpoint=ep, outcome=outcome),
                              encode(cumulative(incs))))
        return out

    def traffic_labels(self, track: str, ep: str) -> dict[str, str]:
        """The labels of the service's series for one plan endpoint on one track, named exactly
        as the service names them (its endpoint label and value, version and env, the track
        label scraping adds, the job)."""
        t = self.plan.traffic
        assert t is not None
        labels = {t.endpoint_label: t.service_endpoint(ep), contract.SERVICE_VERSION: "2.4.1",
                  contract.SERVICE_ENV: "production", t.track_label: track}
        if t.job:
            labels["job"] = t.job
        return labels

    def traffic_series(self, track: str, ep: str, n: int, per_step: dict[str, Sequence[float] | float],
                       errors: dict[str, Sequence[float] | float] | None = None) -> list[Series]:
        """The service's request counter per status (increments per scrape, one value or n),
        and its error counter per error type (``errors``; by default every failure is
        ``internal``)."""
        t = self.plan.traffic
        assert t is not None
        base = self.traffic_labels(track, ep)

        def incs(v: Sequence[float] | float) -> list[float]:
            return [v] * n if isinstance(v, int | float) else list(v)

        out = [Series(selector(t.requests, **base, **{t.status_label: status}), encode(cumulative(incs(v))))
               for status, v in per_step.items()]
        if t.errors is not None:
            failed = [s for s in per_step if s in t.failure]
            if errors is None:
                zero: list[float] = [0.0] * n
                errors = {"internal": [sum(x) for x in zip(zero, *(incs(per_step[s]) for s in failed),
                                                          strict=False)]}
            for kind, v in errors.items():
                sel = selector(t.errors, **base, **{t.error_type_label: kind})
                out.append(Series(sel, encode(cumulative(incs(v)))))
        return out

    def traffic_latency(self, track: str, ep: str, lat: list[float | None],
                        per_step: int = 10) -> list[Series]:
        """The service's latency histogram (_count and _sum): ``per_step`` requests per scrape,
        each taking the given seconds (None: no request in that scrape), and as many requests."""
        t = self.plan.traffic
        assert t is not None and t.duration is not None
        base = self.traffic_labels(track, ep)
        counts = [0 if x is None else per_step for x in lat]
        sums = [0 if x is None else x * per_step for x in lat]
        return [
            Series(selector(f"{t.duration}_count", **base), encode(cumulative(counts))),
            Series(selector(f"{t.duration}_sum", **base), encode(cumulative(sums))),
            Series(selector(t.requests, **base, **{t.status_label: "success"}), encode(cumulative(counts))),
        ]

    def expect(self, ctx: Context, labels: dict[str, str], value: float, rule_index: int = 0) -> dict:
        """The alert that rule ``rule_index`` of the trigger raises, as promtool expects it."""
        rule = ctx.unit.alert_rules(ctx)[rule_index]
        all_labels = {**labels, **rule.labels}
        return {
            "exp_labels": all_labels,
            "exp_annotations": {k: expand(v, all_labels, value) for k, v in rule.annotations.items()},
        }

    def rollback_alerts(self) -> list[str]:
        """Alert names that act (not a page) on probe data: silent on no data and on stable."""
        out = []
        for ctx in self.contexts:
            action = self.plan.actions.get(ctx.trigger.action)
            if ctx.unit.judges_probes and getattr(action, "kind", "") != "page":
                out.append(ctx.trigger.alert)
        return list(dict.fromkeys(out))

    def none_of(self, alerts: list[str], at: float) -> list[AlertCheck]:
        return [AlertCheck(at, a, []) for a in dict.fromkeys(alerts)]

    def unguarded(self, ctx: Context) -> str | None:
        """A target the trigger does not watch (its breaches must roll nothing back)."""
        watched = set(ctx.tracks)
        return next((x.name for x in self.plan.targets if x.name not in watched), None)
