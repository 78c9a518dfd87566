"""The metric contract and its exposition (Prometheus text format 0.0.4).

The exporter owns its exposition instead of going through prometheus_client's registry:
at 10,000 endpoints there are ~410,000 samples, and the generic path (a Sample object and
a label escape per sample per scrape) takes seconds. Here every (track, endpoint) keeps
plain numbers in a ``Series`` that a probe updates in place; each family has one
``%``-template (bytes) per series with the labels escaped once, at start; a probe
re-renders the families it changed; and a scrape joins the ready lines. The output keeps HELP and TYPE for
every family, ``_bucket``/``le`` with ``+Inf``, ``_sum`` and ``_count`` for the histogram and
``_total`` for counters; ``promtool check metrics`` prints nothing for it (tested).

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
    base = f'track="{escape_label(track)}",endpoint="{escape_label(endpoint)}"'
    hist = "".join(
        f'canary_probe_duration_seconds_bucket{{{base},le="{_float(le)}"}} %d\n'
        for le in (*BUCKETS, math.inf)
    )
    hist += (f"canary_probe_duration_seconds_sum{{{base}}} %r\n"
             f"canary_probe_duration_seconds_count{{{base}}} %d\n")

    def labelled(name: str, label: str, values: tuple[str, ...]) -> str:
        return "".join(f'{name}{{{base},{label}="{v}"}} %d\n' for v in values)

    return tuple(t.encode() for t in (
        hist,
        labelled("canary_probes_total", "outcome", OUTCOMES),
        labelled("canary_probe_errors_total", "reason", ERROR_REASONS),
        f"canary_probe_null_streak{{{base}}} %d\n",
        labelled("canary_probe_pii_exposures_total", "kind", PII_KINDS),
        f"canary_probe_success{{{base}}} %d\n",
        f"canary_probe_last_timestamp_seconds{{{base}}} %.3f\n",
        f"canary_probe_status_code{{{base}}} %d\n",
        labelled("canary_probe_skipped_total", "reason", SKIP_REASONS),
    ))


class Metrics:
    """All series of the exporter, plus the info and self metrics; ``render()`` is /metrics."""

    def __init__(self, version: str, plan_name: str):
        self.series: list[Series] = []
        self._by_key: dict[tuple[str, str], Series] = {}
        self.info = (
            "# HELP canary_guard_info canary-guard version and the plan it runs.\n"
            "# TYPE canary_guard_info gauge\n"
            f'canary_guard_info{{version="{escape_label(version)}",plan="{escape_label(plan_name)}"}} 1\n'
        ).encode()
        self.inflight = 0  # probes running right now (set by the scheduler)
        self.started = time.time()

    def add(self, track: str, endpoint: str) -> Series:
        key = (track, endpoint)
        if key not in self._by_key:
            s = Series(track, endpoint)
            self.series.append(s)
            self._by_key[key] = s
        return self._by_key[key]

    def get(self, track: str, endpoint: str) -> Series:
        return self._by_key[(track, endpoint)]

    def render(self) -> bytes:
        """The whole exposition: a join of the lines every series keeps ready."""
        series = self.series
        parts = [self.info]
        for f, (name, kind, help_text) in enumerate(FAMILIES):
            parts.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode())
            parts.extend([s.lines[f] for s in series])
        parts.append((
            "# HELP canary_guard_exporter_inflight_probes Probes in flight right now.\n"
            "# TYPE canary_guard_exporter_inflight_probes gauge\n"
            f"canary_guard_exporter_inflight_probes {self.inflight}\n"
            "# HELP canary_guard_exporter_series Probed (track, endpoint) pairs.\n"
            "# TYPE canary_guard_exporter_series gauge\n"
            f"canary_guard_exporter_series {len(series)}\n"
            "# HELP canary_guard_exporter_start_time_seconds Unix time the exporter started.\n"
            "# TYPE canary_guard_exporter_start_time_seconds gauge\n"
            f"canary_guard_exporter_start_time_seconds {self.started!r}\n"
        ).encode())
        parts.append(_process_metrics())
        return b"".join(parts)


_PROC = None


def _process_metrics() -> bytes:
    """process_* (CPU, RSS, fds) from prometheus_client's ProcessCollector: a dozen samples."""
    global _PROC
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.process_collector import ProcessCollector
    except ImportError:  # pragma: no cover
        return b""
    if _PROC is None:
        _PROC = CollectorRegistry()
        ProcessCollector(registry=_PROC)
    return generate_latest(_PROC)
