"""The recording rules every window gets: probe rates, ratios and latencies at two levels.

Trigger units ask for windows (``TriggerUnit.windows``), the phase gates for theirs; each window
gets this whole family, because dashboards and the gate read them too (docs/rules.md lists it).
A unit that needs something beyond the family returns it from ``TriggerUnit.recording_rules``.

The family comes in two parts: ``window_rules`` (probe rates, ratios, average latency: what the
alerts read) and ``quantile_rules`` (p95/p99, read only by the phase gates and dashboards, and
the costliest: a rate over every histogram bucket of every endpoint). ``spec.build_groups``
puts them in groups by who waits for them. Track-level probe rates sum the endpoint-level rules
recorded just above them (the same numbers: a sum of sums) instead of taking the rate over
every raw series a second time.
"""

from __future__ import annotations

from canary_guard import contract

from .model import RecordingRule
from .names import LEVELS, latency, probes, ratio, w
from .promql import COUNTED

QUANTILES = (("p95", 0.95), ("p99", 0.99))
RATE_OUTCOMES = (contract.SUCCESS, contract.ERROR, contract.NULL)


def window_rules(window: float) -> list[RecordingRule]:
    """Probe rates, ratios and average latency over ``window``, endpoint level first."""
    W = w(window)
    dur = contract.PROBE_DURATION
    out: list[RecordingRule] = []
    (endpoint_level, _), (track_level, track_by) = LEVELS
    for level, by in LEVELS:
        if level == endpoint_level:
            sel_all = f"{contract.PROBES}{{{COUNTED}}}"
            out.append(RecordingRule(probes(level, window), f"sum by ({by}) (rate({sel_all}[{W}]))"))
            for outcome in RATE_OUTCOMES:
                sel = f'{contract.PROBES}{{{contract.OUTCOME}="{outcome}"}}'
                out.append(RecordingRule(probes(level, window, outcome), f"sum by ({by}) (rate({sel}[{W}]))"))
        else:
            for counted in (None, *RATE_OUTCOMES):
                out.append(RecordingRule(probes(level, window, counted),
                                         f"sum by ({track_by}) ({probes(endpoint_level, window, counted)})"))
        # numerator and denominator are aggregated first, then divided (never average ratios)
        out.append(RecordingRule(
            ratio(level, "error_ratio", window),
            f"{probes(level, window, contract.ERROR)}\n/\n{probes(level, window)}",
        ))
        # availability: answered without an error; a null answer is available (null_streak
        # judges it), so that one cause never fires two rollback triggers
        answered = (f"(\n  {probes(level, window, contract.SUCCESS)}\n  +\n"
                    f"  {probes(level, window, contract.NULL)}\n)")
        out.append(RecordingRule(ratio(level, "availability", window),
                                 f"{answered}\n/\n{probes(level, window)}"))
        out.append(RecordingRule(
            latency(level, "avg", window),
            f"sum by ({by}) (rate({dur}_sum[{W}]))\n/\n"
            f"sum by ({by}) (rate({dur}_count[{W}]))",
        ))
    return out


def quantile_rules(window: float) -> list[RecordingRule]:
    """p95 and p99 probe latency over ``window`` at both levels, from the histogram buckets."""
    W = w(window)
    dur = contract.PROBE_DURATION
    return [
        RecordingRule(
            latency(level, stat, window),
            f"histogram_quantile({q}, sum by ({by}, {contract.LE}) (rate({dur}_bucket[{W}])))",
        )
        for level, by in LEVELS
        for stat, q in QUANTILES
    ]
