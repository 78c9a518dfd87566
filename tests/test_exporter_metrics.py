"""The exporter's own exposition: contract names, zeros from the start, valid text format."""

from __future__ import annotations

import subprocess

from canary_guard.exporter.metrics import Metrics
from conftest import need_binary
from prometheus_client.parser import text_string_to_metric_families

from canary_guard.contract import BUCKETS, ERROR_REASONS, OUTCOMES, PII_KINDS
from canary_guard.judge import ProbeOutcome


def parse(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def make() -> Metrics:
    m = Metrics("0.1.0", "recoveryos_elite")
    for track in ("canary", "stable"):
        for ep in ("edge_ai", "homomorphic"):
            m.add(track, ep)
    return m


def test_every_label_combination_exists_with_zero_from_the_start():
    s = samples(make().render().decode())
    for track in ("canary", "stable"):
        for ep in ("edge_ai", "homomorphic"):
            base = (("endpoint", ep), ("track", track))
            for o in OUTCOMES:
                assert s[("canary_probes_total", tuple(sorted(base + (("outcome", o),))))] == 0
            for r in ERROR_REASONS:
                assert s[("canary_probe_errors_total", tuple(sorted(base + (("reason", r),))))] == 0
            for k in PII_KINDS:
                assert s[("canary_probe_pii_exposures_total", tuple(sorted(base + (("kind", k),))))] == 0
            for name in ("canary_probe_null_streak", "canary_probe_success",
                         "canary_probe_last_timestamp_seconds", "canary_probe_duration_seconds_count",
                         "canary_probe_duration_seconds_sum"):
                assert s[(name, base)] == 0
    assert s[("canary_guard_info", (("plan", "recoveryos_elite"), ("version", "0.1.0")))] == 1


def test_families_and_types():
    fams = parse(make().render().decode())
    assert fams["canary_probe_duration_seconds"].type == "histogram"
    assert fams["canary_probes"].type == "counter"  # the parser strips _total
    assert fams["canary_probe_errors"].type == "counter"
    assert fams["canary_probe_pii_exposures"].type == "counter"
    assert fams["canary_probe_null_streak"].type == "gauge"
    assert fams["canary_probe_success"].type == "gauge"
    assert fams["canary_probe_last_timestamp_seconds"].type == "gauge"
    assert fams["canary_guard_info"].type == "gauge"


def test_histogram_buckets_are_cumulative_and_include_the_thresholds():
    m = make()
    s = m.get("canary", "edge_ai")
    for d in (0.003, 0.1, 0.3, 0.5, 0.7, 1.0, 2.0, 99.0):
        s.record(ProbeOutcome("success", None, 200, d), now=123.0)
    got = samples(m.render().decode())
    base = (("endpoint", "edge_ai"), ("track", "canary"))

    def bucket(le: str) -> float:
        return got[("canary_probe_duration_seconds_bucket", tuple(sorted(base + (("le", le),))))]

    for le in (0.1, 0.25, 0.5, 1.0, 2.5, 5.0):
        assert le in BUCKETS
    assert bucket("0.005") == 1
    assert bucket("0.1") == 2          # le is inclusive
    assert bucket("0.5") == 4
    assert bucket("1.0") == 6
    assert bucket("2.5") == 7
    assert bucket("+Inf") == 8
    assert got[("canary_probe_duration_seconds_count", base)] == 8
    assert abs(got[("canary_probe_duration_seconds_sum", base)] - 103.603) < 1e-9
    assert got[("canary_probe_last_timestamp_seconds", base)] == 123.0


def test_record_counts_outcomes_reasons_pii_and_streak():
    m = make()
    s = m.get("stable", "homomorphic")
    s.record(ProbeOutcome("null", None, 200, 0.01))
    s.record(ProbeOutcome("null", None, 200, 0.01, ("email", "card")))
    s.record(ProbeOutcome("error", "timeout", None, None))
    m.render().decode()  # a render in between must not freeze cached values
    s.record(ProbeOutcome("null", None, 200, 0.01))
    got = samples(m.render().decode())
    base = (("endpoint", "homomorphic"), ("track", "stable"))

    def with_(k, v):
        return tuple(sorted(base + ((k, v),)))

    assert got[("canary_probes_total", with_("outcome", "null"))] == 3
    assert got[("canary_probes_total", with_("outcome", "error"))] == 1
    assert got[("canary_probe_errors_total", with_("reason", "timeout"))] == 1
    assert got[("canary_probe_pii_exposures_total", with_("kind", "email"))] == 1
    assert got[("canary_probe_pii_exposures_total", with_("kind", "card"))] == 1
    assert got[("canary_probe_null_streak", base)] == 1     # the error broke the streak
    assert got[("canary_probe_duration_seconds_count", base)] == 3  # timeouts are not observed
    assert got[("canary_probe_success", base)] == 0
    s.record(ProbeOutcome("success", None, 200, 0.01))
    got = samples(m.render().decode())
    assert got[("canary_probe_success", base)] == 1
    assert got[("canary_probe_null_streak", base)] == 0
    # other series untouched
    assert got[("canary_probes_total", (("endpoint", "homomorphic"), ("outcome", "null"),
                                        ("track", "canary")))] == 0


def test_label_values_are_escaped():
    m = Metrics('1"x', 'a\\b\nc')
    assert r'canary_guard_info{version="1\"x",plan="a\\b\nc"} 1' in m.render().decode()
    parse(m.render().decode())


def test_promtool_check_metrics_is_silent():
    promtool = need_binary("promtool")
    m = make()
    m.get("canary", "edge_ai").record(ProbeOutcome("error", "http_5xx", 500, 0.2, ("ssn",)))
    proc = subprocess.run([promtool, "check", "metrics"], input=m.render().decode(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout + proc.stderr == ""
