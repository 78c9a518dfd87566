"""/metrics as Prometheus asks for it: OpenMetrics, gzip, streamed with flat memory."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import time
import tracemalloc
import urllib.error
import urllib.parse
import urllib.request

import pytest
from canary_guard.exporter import exposition as x
from canary_guard.exporter.metrics import Metrics
from conftest import need_binary, start_sandbox
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from test_exporter import start_exporter, write_plan

from canary_guard import contract
from canary_guard.judge import ProbeOutcome

# what Prometheus 2.42 sends when it scrapes
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def make(n: int = 2) -> Metrics:
    m = Metrics("0.1.0", "recoveryos_elite")
    for i in range(n):
        for track in ("canary", "stable"):
            s = m.add(track, f"e_{i:05d}")
            s.record(ProbeOutcome("error", "http_5xx", 503, 0.25, pii=("email",)))
            s.record(ProbeOutcome("success", None, 200, 0.0123))
    return m


@pytest.mark.parametrize("accept,fmt", [
    (PROMETHEUS_ACCEPT, x.OPENMETRICS),
    ("application/openmetrics-text; version=0.0.1", x.OPENMETRICS),
    ("application/openmetrics-text", x.OPENMETRICS),
    ("text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5", x.TEXT),
    ("application/openmetrics-text;version=2.0.0,text/plain;q=0.5", x.TEXT),
    ("application/openmetrics-text;q=0", x.TEXT),
    ("application/openmetrics-text;q=bogus,text/plain", x.TEXT),
    ("*/*", x.TEXT), ("", x.TEXT), (None, x.TEXT), ("application/json", x.TEXT),
])
def test_negotiation(accept, fmt):
    assert x.negotiate(accept) == fmt


@pytest.mark.parametrize("header,gz", [("gzip", True), ("gzip, deflate, br", True),
                                       ("br;q=1, gzip;q=0.5", True), ("gzip;q=0", False),
                                       ("*", True), ("*;q=0", False),
                                       ("identity", False), ("", False), (None, False)])
def test_gzip_negotiation(header, gz):
    assert x.accepts_gzip(header) is gz


def test_openmetrics_is_strict_openmetrics_with_the_same_samples():
    m = make()
    om, text = m.render(x.OPENMETRICS).decode(), m.render(x.TEXT).decode()
    assert om.endswith("\n# EOF\n") and "# EOF" not in text
    families = {f.name: f for f in parse_openmetrics(om)}  # the strict parser of the spec
    assert families["canary_probes"].type == "counter"
    assert families["canary_probe_pii_exposures"].type == "counter"
    assert families["canary_guard"].type == "info"
    assert families[contract.PROBE_DURATION].type == "histogram"
    assert families[contract.PROBE_DURATION].unit == "seconds"
    assert "# TYPE canary_probes counter\n" in om and "# TYPE canary_probes_total counter\n" in text

    def sample_lines(body: str) -> list[str]:
        return [line for line in body.splitlines() if line.startswith("canary_probe")]

    assert sample_lines(om) == sample_lines(text)  # only the family headers differ
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("canary_probes_total", (("endpoint", "e_00000"), ("outcome", "error"),
                                            ("track", "canary")))] == 1
    assert samples[("canary_guard_info", (("plan", "recoveryos_elite"), ("version", "0.1.0")))] == 1


def as_text_format(om: str) -> str:
    """OpenMetrics headers rewritten as the text format names them, for promtool (2.42 reads only
    the text format): a counter family gets its _total back, info becomes a gauge."""
    kinds = dict(re.findall(r"^# TYPE (\S+) (\S+)$", om, flags=re.M))
    out = []
    for line in om.splitlines():
        if line == "# EOF" or line.startswith("# UNIT "):
            continue
        m = re.match(r"^# (HELP|TYPE) (\S+)(.*)$", line)
        if m:
            kind, name, rest = m.group(1), m.group(2), m.group(3)
            if kinds[name] == "counter":
                name += "_total"
            elif kinds[name] == "info":
                name, rest = name + "_info", (" gauge" if kind == "TYPE" else rest)
            line = f"# {kind} {name}{rest}"
        out.append(line)
    return "\n".join(out) + "\n"


def test_promtool_check_metrics_is_silent_on_both_formats():
    promtool = need_binary("promtool")
    m = make()
    for body in (m.render(x.TEXT).decode(), as_text_format(m.render(x.OPENMETRICS).decode())):
        parse_text(body)
        proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_chunks_hold_the_same_bytes_and_stay_small():
    m = make(50)
    whole = m.render(x.OPENMETRICS)
    pieces = list(x.chunks(m, x.OPENMETRICS, size=4096))
    assert len(pieces) > 10 and all(len(p) < 4096 + 4000 for p in pieces)
    # equal but for the process metrics, read again at each call
    assert b"".join(pieces).split(b"# HELP process_")[0] == whole.split(b"# HELP process_")[0]


def test_a_scrape_takes_a_consistent_snapshot():
    m = make(1)
    series = m.get("canary", "e_00000")
    stream = x.chunks(m, x.TEXT, size=64)
    first = next(stream)
    series.record(ProbeOutcome("null", None, 200, 0.5))  # a probe lands during the scrape
    body = (first + b"".join(stream)).decode()
    assert 'canary_probes_total{track="canary",endpoint="e_00000",outcome="null"} 0' in body
    assert 'canary_probe_duration_seconds_count{track="canary",endpoint="e_00000"} 2' in body


def test_streaming_memory_does_not_grow_with_the_exposition():
    m = make(2500)  # 5,000 series, ~16 MB of exposition
    for fmt in (x.TEXT, x.OPENMETRICS):
        x.snapshot(m, fmt)  # the process collector's first import is not the scrape's
        tracemalloc.start()
        try:
            size = 0
            for chunk in x.chunks(m, fmt):
                size += len(chunk)
            _, streamed = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            whole = len(m.render(fmt))
            _, joined = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert size > 15e6 and abs(whole - size) < 1000  # process_* values move a little
        assert streamed < 2.5e6, streamed  # a chunk and the snapshot's pointers, not the body
        assert joined > size  # what a joined body costs


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_the_exporter_serves_what_each_client_asks_for(procs, tmp_path):
    sandbox = start_sandbox(procs, env={"RECOVERYOS_API_KEY": ""})
    url, _ = start_exporter(procs, write_plan(tmp_path, sandbox))
    status, headers, body = get(f"{url}/metrics", {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in headers["Vary"]
    om = gzip.decompress(body).decode()
    assert len(body) * 5 < len(om)
    families = {f.name: f for f in parse_openmetrics(om)}
    assert {"canary_probes", "canary_probe_duration_seconds", "canary_guard"} <= set(families)
    # a plain client (curl, an old Prometheus) gets the text format, uncompressed
    status, headers, body = get(f"{url}/metrics")
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in headers
    text = body.decode()
    parse_text(text)
    counts = {tuple(sorted(s.labels.items())): s.value for f in parse_text(text)
              if f.name == "canary_guard_exporter_scrapes" for s in f.samples}
    assert counts[(("encoding", "gzip"), ("format", "openmetrics"))] == 1
    assert counts[(("encoding", "identity"), ("format", "text"))] == 1
    status, headers, body = get(f"{url}/metrics", method="HEAD")
    assert status == 200 and body == b""


def prom_query(prom: str, expr: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": expr})
    return json.loads(urllib.request.urlopen(f"{prom}/api/v1/query?{q}", timeout=10).read())["data"]["result"]


@pytest.mark.e2e
def test_a_real_prometheus_scrapes_openmetrics_with_gzip(procs, tmp_path):
    from conftest import free_port

    sandbox = start_sandbox(procs, env={"RECOVERYOS_API_KEY": ""})
    exporter, _ = start_exporter(procs, write_plan(tmp_path, sandbox))
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = exporter.removeprefix("http://")
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "canary-guard", "static_configs": [{"targets": [target]}]}],
    }))
    prom = f"http://127.0.0.1:{port}"
    procs.start([need_binary("prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                "prometheus", ready_url=f"{prom}/-/ready", timeout=60)
    deadline = time.monotonic() + 60
    served: list[dict] = []
    asked = f'{contract.EXPORTER_SCRAPES}{{format="openmetrics",encoding="gzip"}} >= 3'
    while time.monotonic() < deadline:
        try:
            served = prom_query(prom, asked)
        except urllib.error.HTTPError:  # 503 until the TSDB is ready
            served = []
        if served:
            break
        time.sleep(0.5)
    assert served, procs.log("prometheus")[-2000:]
    # Prometheus asked for OpenMetrics and gzip, parsed it, and stored the series
    assert prom_query(prom, 'up{job="canary-guard"} == 1')
    assert prom_query(prom, f'{contract.EXPORTER_SCRAPES}{{format="text"}} > 0') == []
    probes = prom_query(prom, f'sum({contract.PROBES}{{track="canary"}})')
    assert probes and float(probes[0]["value"][1]) > 0
    buckets = prom_query(prom, f'count({contract.PROBE_DURATION}_bucket{{le="+Inf"}})')
    assert buckets and float(buckets[0]["value"][1]) >= 1
