"""The metric contract's series, kept ready to expose (``exposition.py`` serves them).

The exporter owns its exposition instead of going through prometheus_client's registry:
at 10,000 endpoints there are ~410,000 samples, and the generic path (a Sample object and
a label escape per sample per scrape) takes seconds (``bench/bench_exposition.py`` prints
both side by side). Here every (track, endpoint) keeps plain numbers in a ``Series`` that a
probe updates in place; each family has one ``%``-template (bytes) per series with the labels
escaped once, at start; a probe re-renders the families it changed; and a scrape streams the
ready lines. The sample lines are the same in both formats (Prometheus text 0.0.4 and
OpenMetrics 1.0.0): ``_bucket``/``le`` with ``+Inf``, ``_sum`` and ``_count`` for the
histogram, ``_total`` for counters; only the family headers differ.

Every label combination exists from the first scrape, with 0: outcomes, error reasons and
PII kinds are fixed, bounded sets (see ``judge``).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left

from canary_guard import contract as c
from canary_guard.contract import BUCKETS, ERROR_REASONS, OUTCOMES, PII_KINDS, SKIP_REASONS

from .judge import ProbeOutcome

_OUTCOME_INDEX = {o: i for i, o in enumerate(OUTCOMES)}
_REASON_INDEX = {r: i for i, r in enumerate(ERROR_REASONS)}
_PII_INDEX = {k: i for i, k in enumerate(PII_KINDS)}
_SKIP_INDEX = {k: i for i, k in enumerate(SKIP_REASONS)}
# family indexes (FAMILIES order)
_HIST, _OUTCOMES, _ERRORS, _STREAK, _PII, _SUCCESS, _LAST, _STATUS, _SKIPPED = range(9)

# (name, type, help) in exposition order
FAMILIES = (
    (c.PROBE_DURATION, "histogram",
     "Duration of probes that got a complete response, from request to last body byte."),
    (c.PROBES, "counter", "Probes by outcome: success, error, null or disabled."),
    (c.PROBE_ERRORS, "counter", "Probes with outcome error, by reason."),
    (c.NULL_STREAK, "gauge",
     "Consecutive null responses right now; 0 after any non-null response."),
    (c.PII_EXPOSURES, "counter",
     "Responses that contained unredacted PII, by kind (email, ssn, phone, card)."),
    (c.PROBE_SUCCESS, "gauge", "1 when the last probe's outcome was success, else 0."),
    (c.LAST_PROBE, "gauge",
     "Unix time at which the last probe finished (0 before the first)."),
    (c.STATUS_CODE, "gauge", "HTTP status of the last probe's response (0: none)."),
    (c.PROBES_SKIPPED, "counter",
     "Scheduled probes not sent: previous probe still running (busy) or rate-limit backoff."),
)


def escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _float(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    return repr(float(v))


class Series:
    """The numbers of one (track, endpoint), and their rendered lines, updated in place.

    ``lines[f]`` holds the exposition lines (bytes) of family ``f`` (FAMILIES order). A probe
    re-renders only the families it changed, right away: a few microseconds per probe, so a
    scrape is a plain join of ready bytes however many series changed since the last one.
    """

    __slots__ = ("track", "endpoint", "outcomes", "errors", "pii", "buckets", "sum", "streak",
                 "success", "last", "status", "skipped", "templates", "lines")

    def __init__(self, track: str, endpoint: str):
        self.track = track
        self.endpoint = endpoint
        self.outcomes = [0] * len(OUTCOMES)
        self.errors = [0] * len(ERROR_REASONS)
        self.pii = [0] * len(PII_KINDS)
        self.buckets = [0] * (len(BUCKETS) + 1)  # cumulative; the last one is +Inf == count
        self.sum = 0.0
        self.streak = 0
        self.success = 0
        self.last = 0.0
        self.status = 0
        self.skipped = [0] * len(SKIP_REASONS)
        self.templates = _templates(track, endpoint)
        self.lines = [self.templates[f] % self.values(f) for f in range(len(FAMILIES))]

    def _render(self, family: int) -> None:
        self.lines[family] = self.templates[family] % self.values(family)

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        b = self.buckets
        for i in range(bisect_left(BUCKETS, seconds), len(b)):
            b[i] += 1
        self._render(_HIST)

    def record(self, outcome: ProbeOutcome, now: float | None = None) -> None:
        self.outcomes[_OUTCOME_INDEX[outcome.outcome]] += 1
        self._render(_OUTCOMES)
        if outcome.reason is not None:
            self.errors[_REASON_INDEX[outcome.reason]] += 1
            self._render(_ERRORS)
        if outcome.pii:
            for kind in outcome.pii:
                self.pii[_PII_INDEX[kind]] += 1
            self._render(_PII)
        if outcome.duration is not None:
            self.observe(outcome.duration)
        streak = self.streak + 1 if outcome.outcome == "null" else 0
        if streak != self.streak:
            self.streak = streak
            self._render(_STREAK)
        success = 1 if outcome.outcome == "success" else 0
        if success != self.success:
            self.success = success
            self._render(_SUCCESS)
        status = outcome.status or 0
        if status != self.status:
            self.status = status
            self._render(_STATUS)
        self.last = time.time() if now is None else now
        self._render(_LAST)

    def skip(self, reason: str) -> None:
        self.skipped[_SKIP_INDEX[reason]] += 1
        self._render(_SKIPPED)

    def values(self, family: int) -> tuple:
        """The tuple that family ``family``'s template is filled with."""
        if family == _HIST:
            return (*self.buckets, self.sum, self.buckets[-1])
        if family == _OUTCOMES:
            return tuple(self.outcomes)
        if family == _ERRORS:
            return tuple(self.errors)
        if family == _STREAK:
            return (self.streak,)
        if family == _PII:
            return tuple(self.pii)
        if family == _SUCCESS:
            return (self.success,)
        if family == _LAST:
            return (self.last,)
        if family == _STATUS:
            return (self.status,)
        return tuple(self.skipped)


def _templates(track: str, endpoint: str) -> tuple[bytes, ...]:
    base = f'{c.TRACK}="{escape_label(track)}",{c.ENDPOINT}="{escape_label(endpoint)}"'
    hist = "".join(
        f'{c.PROBE_DURATION}_bucket{{{base},le="{_float(le)}"}} %d\n'
        for le in (*BUCKETS, math.inf)
    )
    hist += (f"{c.PROBE_DURATION}_sum{{{base}}} %r\n"
             f"{c.PROBE_DURATION}_count{{{base}}} %d\n")

    def labelled(name: str, label: str, values: tuple[str, ...]) -> str:
        return "".join(f'{name}{{{base},{label}="{v}"}} %d\n' for v in values)

    return tuple(t.encode() for t in (
        hist,
        labelled(c.PROBES, c.OUTCOME, OUTCOMES),
        labelled(c.PROBE_ERRORS, c.REASON, ERROR_REASONS),
        f"{c.NULL_STREAK}{{{base}}} %d\n",
        labelled(c.PII_EXPOSURES, c.KIND, PII_KINDS),
        f"{c.PROBE_SUCCESS}{{{base}}} %d\n",
        f"{c.LAST_PROBE}{{{base}}} %.3f\n",
        f"{c.STATUS_CODE}{{{base}}} %d\n",
        labelled(c.PROBES_SKIPPED, c.REASON, SKIP_REASONS),
    ))


class Metrics:
    """All series of the exporter and its own numbers; ``exposition`` turns them into /metrics."""

    def __init__(self, version: str, plan_name: str):
        self.series: list[Series] = []
        self._by_key: dict[tuple[str, str], Series] = {}
        self.version = version
        self.plan_name = plan_name
        self.inflight = 0  # probes running right now (set by the scheduler)
        self.started = time.time()
        # (format, encoding) -> scrapes served
        self.scrapes = {(f, e): 0 for f in c.EXPOSITION_FORMATS for e in c.EXPOSITION_ENCODINGS}

    def add(self, track: str, endpoint: str) -> Series:
        key = (track, endpoint)
        if key not in self._by_key:
            s = Series(track, endpoint)
            self.series.append(s)
            self._by_key[key] = s
        return self._by_key[key]

    def get(self, track: str, endpoint: str) -> Series:
        return self._by_key[(track, endpoint)]

    def render(self, fmt: str = "text") -> bytes:
        """The whole exposition at once (tests, benchmarks); /metrics streams it instead."""
        from .exposition import chunks

        return b"".join(chunks(self, fmt))
