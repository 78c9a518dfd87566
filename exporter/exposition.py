"""/metrics: content negotiation, the two exposition formats, and a streamed body.

Prometheus asks for OpenMetrics first (``Accept: application/openmetrics-text;version=1.0.0,
...;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1``) and gzip (``Accept-Encoding: gzip``);
other clients get the text format 0.0.4 and, unless they accept gzip, plain bytes. In
OpenMetrics a counter's family is named without ``_total`` (its samples keep it), the info
metric is of type ``info``, units are declared, and the body ends with ``# EOF``.

The body is never built whole: a scrape takes a snapshot of references to the lines every
series keeps ready (a consistent view, a pointer per line), then streams them in pieces of
``CHUNK`` bytes, each compressed as it goes, and waits whenever the client falls behind. The
exporter's memory therefore stays flat through a scrape of any size.
"""

from __future__ import annotations

from collections.abc import Iterator

from canary_guard import contract as c

from .metrics import FAMILIES, Metrics, escape_label

OPENMETRICS, TEXT = c.EXPOSITION_FORMATS
GZIP, IDENTITY = c.EXPOSITION_ENCODINGS
CONTENT_TYPES = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
OPENMETRICS_VERSIONS = ("1.0.0", "0.0.1")  # 0.0.1 is the same format under its draft name
CHUNK = 1 << 18  # bytes per write: large enough to be cheap, small enough to keep memory flat
# gzip level 1: 25x smaller than plain at a third of the CPU of the default level 6, which
# would save only another 10% of a much smaller body (bench/bench_exposition.py)
GZIP_LEVEL = 1
EOF_LINE = b"# EOF\n"


# -- negotiation ----------------------------------------------------------------------------


def _media_ranges(header: str | None) -> list[tuple[str, dict[str, str], float]]:
    """(type, parameters, q) for each element of an Accept or Accept-Encoding header."""
    out = []
    for item in (header or "").split(","):
        name, *params = (p.strip() for p in item.split(";"))
        if not name:
            continue
        values = {}
        for p in params:
            key, _, value = p.partition("=")
            values[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(values.pop("q", "1"))
        except ValueError:
            q = 0.0
        out.append((name.lower(), values, q))
    return out


def negotiate(accept: str | None) -> str:
    """OPENMETRICS when the client prefers it at least as much as the text format, else TEXT."""
    om = text = 0.0
    for media, params, q in _media_ranges(accept):
        if media == "application/openmetrics-text":
            if params.get("version", OPENMETRICS_VERSIONS[0]) in OPENMETRICS_VERSIONS:
                om = max(om, q)
        elif media in ("text/plain", "text/*", "*/*"):
            text = max(text, q)
    return OPENMETRICS if om > 0 and om >= text else TEXT


def accepts_gzip(accept_encoding: str | None) -> bool:
    ranges = {name: q for name, _, q in _media_ranges(accept_encoding)}
    if "gzip" in ranges:
        return ranges["gzip"] > 0
    return ranges.get("*", 0) > 0


# -- the two formats ------------------------------------------------------------------------


def _family_name(name: str, kind: str, fmt: str) -> str:
    return name.removesuffix("_total") if fmt == OPENMETRICS and kind == "counter" else name


def header(name: str, kind: str, help_text: str, fmt: str) -> str:
    """HELP and TYPE (and, in OpenMetrics, UNIT) of one family."""
    family = _family_name(name, kind, fmt)
    out = f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n"
    if fmt == OPENMETRICS and family.endswith("_seconds"):
        out += f"# UNIT {family} seconds\n"
    return out


_HEADERS = {fmt: [header(n, k, h, fmt).encode() for n, k, h in FAMILIES] for fmt in CONTENT_TYPES}


def _info(metrics: Metrics, fmt: str) -> bytes:
    labels = f'version="{escape_label(metrics.version)}",plan="{escape_label(metrics.plan_name)}"'
    help_text = "canary-guard version and the plan it runs."
    if fmt == OPENMETRICS:  # an info family: samples carry the _info suffix
        family = c.INFO.removesuffix("_info")
        head = f"# HELP {family} {help_text}\n# TYPE {family} info\n"
    else:
        head = header(c.INFO, "gauge", help_text, fmt)
    return f"{head}{c.INFO}{{{labels}}} 1\n".encode()


def _own(metrics: Metrics, fmt: str) -> bytes:
    scrapes = "".join(f'{c.EXPORTER_SCRAPES}{{format="{f}",encoding="{e}"}} {n}\n'
                      for (f, e), n in metrics.scrapes.items())
    return "".join((
        header(c.EXPORTER_INFLIGHT, "gauge", "Probes in flight right now.", fmt),
        f"{c.EXPORTER_INFLIGHT} {metrics.inflight}\n",
        header(c.EXPORTER_SERIES, "gauge", "Probed (track, endpoint) pairs.", fmt),
        f"{c.EXPORTER_SERIES} {len(metrics.series)}\n",
        header(c.EXPORTER_START_TIME, "gauge", "Unix time the exporter started.", fmt),
        f"{c.EXPORTER_START_TIME} {metrics.started!r}\n",
        header(c.EXPORTER_SCRAPES, "counter",
               "Scrapes of /metrics served, by exposition format and content encoding.", fmt),
        scrapes,
    )).encode()


_PROCESS = None


def _process(fmt: str) -> bytes:
    """process_* (CPU, RSS, fds) from prometheus_client's ProcessCollector: a dozen samples."""
    global _PROCESS
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
    from prometheus_client.process_collector import ProcessCollector

    if _PROCESS is None:
        _PROCESS = CollectorRegistry()
        ProcessCollector(registry=_PROCESS)
    if fmt == OPENMETRICS:
        return generate_openmetrics(_PROCESS).removesuffix(EOF_LINE)
    return generate_latest(_PROCESS)


# -- the body -------------------------------------------------------------------------------


def snapshot(metrics: Metrics, fmt: str) -> list[bytes]:
    """Every piece of the exposition, in order: references to the lines the series hold now."""
    series = metrics.series
    parts = [_info(metrics, fmt)]
    for f, family_header in enumerate(_HEADERS[fmt]):
        parts.append(family_header)
        parts.extend([s.lines[f] for s in series])
    parts.append(_own(metrics, fmt))
    parts.append(_process(fmt))
    if fmt == OPENMETRICS:
        parts.append(EOF_LINE)
    return parts


def chunks(metrics: Metrics, fmt: str = TEXT, size: int = CHUNK) -> Iterator[bytes]:
    """The exposition in pieces of about ``size`` bytes, from a snapshot taken at this call."""
    return _grouped(snapshot(metrics, fmt), size)


def _grouped(parts: list[bytes], size: int) -> Iterator[bytes]:
    buf: list[bytes] = []
    n = 0
    for part in parts:
        buf.append(part)
        n += len(part)
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)
