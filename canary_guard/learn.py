"""``plan learn``: what a running baseline answers, and the plan changes that follow from it.

From a sample of each endpoint (``canary_guard.sampling``) it proposes, per endpoint:

- ``required_fields``: the top-level fields present and non-null in every 2xx answer of every
  sampled track (plus the plan's dotted, nested fields that held in every answer). A field the
  baseline does not always return would count a healthy answer as null.
- ``timeout``: only where the endpoint's timeout (or, without its own, the demo's) is not
  comfortably above the observed tail: 3x the p99 or 2x the slowest answer, rounded up.
- ``learned``: the observed latency (p50, p95, p99, max), so that ``plan check`` can warn
  when a timeout or a latency threshold comes close to it later.

``write`` applies the proposals to the plan file in place, keeping its comments, order and
layout (ruamel.yaml round trip), and refuses to write a file that would not load.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from canary_guard.durations import format_duration, human_seconds

from .plan import Learned, Plan, PlanError, parse_plan
from .plan.model import suggest_timeout
from .sampling import Sample

if TYPE_CHECKING:  # ruamel.yaml is imported only to write a plan
    from ruamel.yaml.comments import CommentedMap


@dataclass
class Proposal:
    """The changes ``plan learn`` proposes for one endpoint (None: leave as it is)."""

    index: int
    endpoint: str
    required_fields: list[str] | None = None
    dropped: list[str] = field(default_factory=list)  # required now, not always returned
    added: list[str] = field(default_factory=list)  # always returned, not required now
    timeout: float | None = None
    learned: Learned | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return self.required_fields is not None or self.timeout is not None


def _nearest_rank(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def propose(plan: Plan, samples: dict[str, dict[str, Sample]], at: datetime | None = None) -> list[Proposal]:
    """One proposal per sampled endpoint; ``samples``: track -> endpoint -> sample."""
    stamp = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tracks = list(samples)
    out = []
    for i, ep in enumerate(plan.endpoints):
        per_track = [samples[t][ep.name] for t in tracks if ep.name in samples[t]]
        if not per_track:
            continue
        prop = Proposal(i, ep.name)
        out.append(prop)
        xs = sorted(x for s in per_track for x in s.latencies)
        n = sum(len(s.answers) for s in per_track)
        if xs:
            ms = [round(x, 3) for x in xs]  # written to the plan in whole milliseconds
            prop.learned = Learned(
                probes=n, p50=_nearest_rank(ms, 0.5), p95=_nearest_rank(ms, 0.95),
                p99=_nearest_rank(ms, 0.99), max=ms[-1], track=",".join(tracks), at=stamp,
            )
        ok = [s for s in per_track if any(a.fields is not None for a in s.answers)]
        if len(ok) < len(per_track) or any(not s.fields_always() for s in per_track):
            prop.notes.append("no JSON object answer on every track: required_fields left as they are")
        else:
            prop_fields = _propose_fields(ep.required_fields, per_track)
            if set(prop_fields) != set(ep.required_fields):
                prop.required_fields = prop_fields
                prop.dropped = [f for f in ep.required_fields if f not in prop_fields]
                prop.added = [f for f in prop_fields if f not in ep.required_fields]
        if prop.learned is not None:
            seen = prop.learned
            need = suggest_timeout(seen.p99, seen.max)
            current = plan.endpoint_timeout(ep)
            low = current < need or (ep.timeout is None and plan.demo.probe_timeout < need)
            if low:  # never shorter than today's: a long timeout only delays seeing a hang
                prop.timeout = max(need, current)
        if len(xs) < n:
            prop.notes.append(f"{n - len(xs)} of {n} probes got no complete answer")
    return out


def _propose_fields(current: list[str], per_track: list[Sample]) -> list[str]:
    """The top-level fields every answer of every track carried, in the service's order, then
    the plan's nested (dotted) fields that every answer carried."""
    common = [f for f in per_track[0].fields_always() if all(f in s.fields_always() for s in per_track[1:])]
    nested_ok = [f for f in current if "." in f and all(
        f not in a.missing for s in per_track for a in s.answers if a.fields is not None)]
    return common + nested_ok


# -- reports -----------------------------------------------------------------------------------


def table(plan: Plan, track: str, url: str, samples: dict[str, Sample], seconds: float) -> str:
    """Per endpoint: status codes, latency p50/p95/p99/max, the fields every answer carried."""
    rows: list[tuple[str, ...]] = [
        ("ENDPOINT", "STATUS", "P50", "P95", "P99", "MAX", "NON-NULL IN EVERY ANSWER")]
    for ep in plan.endpoints:
        s = samples.get(ep.name)
        if s is None:
            continue
        statuses = " ".join(f"{k}x{v}" for k, v in sorted(s.statuses.items()))
        qs = [s.quantile(q) for q in (0.5, 0.95, 0.99)] + [s.latencies[-1] if s.latencies else None]
        fields = s.fields_always()
        rows.append((ep.name, statuses or "-", *(human_seconds(q) if q is not None else "-" for q in qs),
                     ", ".join(fields) if fields else "(none)"))
    n = sum(len(s.answers) for s in samples.values())
    head = f"{track} ({url}): {n} probes of {len(samples)} endpoints in {seconds:.0f}s"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [head]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return "\n".join(lines)


def describe(plan: Plan, proposals: list[Proposal]) -> list[str]:
    """One line per proposed change, with its field path."""
    lines = []
    for p in proposals:
        ep = plan.endpoints[p.index]
        path = f"endpoints[{p.index}]"
        if p.required_fields is not None:
            why = []
            if p.dropped:
                why.append("not always returned: " + ", ".join(p.dropped))
            if p.added:
                why.append("always returned: " + ", ".join(p.added))
            lines.append(f"{path}.required_fields ({ep.name}): [{', '.join(ep.required_fields)}] -> "
                         f"[{', '.join(p.required_fields)}]  ({'; '.join(why)})")
        if p.timeout is not None and p.learned is not None:
            was = format_duration(ep.timeout) if ep.timeout is not None else (
                f"probe.timeout {format_duration(plan.probe.timeout)}, demo "
                f"{format_duration(plan.demo.probe_timeout)}")
            lines.append(f"{path}.timeout ({ep.name}): {was} -> {format_duration(p.timeout)}  "
                         f"(p99 {human_seconds(p.learned.p99)}, slowest {human_seconds(p.learned.max)})")
        for note in p.notes:
            lines.append(f"{path} ({ep.name}): {note}")
    return lines


# -- writing the plan back -----------------------------------------------------------------------
# Text edits at the positions ruamel.yaml reports, not a re-dump: every byte of the plan that
# is not changed (comments, quoting, flow styles, blank lines) stays exactly as it was.

WIDTH = 100


def _scalar(value: object) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _flow(key: str, items: list[str], indent: int, braces: str = "[]") -> list[str]:
    """``key: [a, b, ...]`` wrapped at WIDTH, continuation lines aligned after the bracket."""
    head = " " * indent + f"{key}: {braces[0]}"
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + (", " if i + 1 < len(items) else braces[1])
        if line != head and len(line) + len(piece.rstrip()) > WIDTH:
            lines.append(line.rstrip())
            line = " " * len(head)
        line += piece
    if not items:
        line += braces[1]
    lines.append(line.rstrip())
    return lines


def _learned_items(seen: Learned) -> list[str]:
    items = [f"probes: {seen.probes}"]
    items += [f"{k}: {format_duration(getattr(seen, k))}" for k in ("p50", "p95", "p99", "max")]
    if seen.track:
        items.append(f"track: {_scalar(seen.track)}")
    if seen.at:
        items.append(f"at: {_scalar(seen.at)}")
    return items


def _key_span(lines: list[str], mapping: CommentedMap, key: str, end: int) -> tuple[int, int]:
    """Lines [start, stop) of ``key`` and its value in ``mapping`` (ends before ``end``), without
    the comment-only or blank lines that trail it."""
    start = mapping.lc.key(key)[0]
    keys = list(mapping)
    later = [mapping.lc.key(k)[0] for k in keys[keys.index(key) + 1:]]
    stop = min(later) if later else end
    while stop - 1 > start and (not lines[stop - 1].strip() or lines[stop - 1].lstrip().startswith("#")):
        stop -= 1
    return start, stop


def apply(text: str, proposals: list[Proposal], with_learned: bool = True) -> str:
    """The plan text with the proposals applied; every other line stays as it was."""
    from ruamel.yaml import YAML

    doc = YAML().load(text)
    lines = text.split("\n")
    endpoints = doc["endpoints"]
    top = list(doc)
    after = top[top.index("endpoints") + 1:]
    plan_end = min((doc.lc.key(k)[0] for k in after), default=len(lines))
    edits: list[tuple[int, int, list[str]]] = []  # (start, stop, new lines), applied bottom-up
    for p in proposals:
        node = endpoints[p.index]
        if node.get("name") != p.endpoint:
            raise ValueError(f"endpoints[{p.index}] is {node.get('name')!r} in the file, not {p.endpoint!r}")
        end = endpoints.lc.item(p.index + 1)[0] if p.index + 1 < len(endpoints) else plan_end
        indent = node.lc.key("name")[1]
        last = max(_key_span(lines, node, k, end)[1] for k in node)  # the endpoint's last line + 1
        inserts: list[str] = []
        if p.required_fields is not None:
            new = _flow("required_fields", [_scalar(f) for f in p.required_fields], indent)
            if "required_fields" in node:
                start, stop = _key_span(lines, node, "required_fields", end)
                comment = _trailing_comment(lines[stop - 1])
                if comment:
                    new[-1] += comment
                edits.append((start, stop, new))
            else:
                inserts += new
        if p.timeout is not None:
            value = format_duration(p.timeout)
            if "timeout" in node:
                row = node.lc.key("timeout")[0]
                old = lines[row]
                head, _, rest = old.partition(":")
                token = rest.split()[0] if rest.split() else ""
                edits.append((row, row + 1, [head + ":" + rest.replace(token, value, 1)]))
            else:
                inserts.append(" " * indent + f"timeout: {value}")
        if with_learned and p.learned is not None:
            new = _flow("learned", _learned_items(p.learned), indent, "{}")
            if "learned" in node:
                start, stop = _key_span(lines, node, "learned", end)
                edits.append((start, stop, new))
            else:
                inserts += new
        if inserts:
            edits.append((last, last, inserts))
    for start, stop, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        lines[start:stop] = new
    return "\n".join(lines)


def _trailing_comment(line: str) -> str:
    """`` # ...`` after a flow list's closing bracket, if any."""
    head, sep, comment = line.rpartition("]")
    return comment if sep and comment.strip().startswith("#") else ""


def expected_plan(plan: Plan, proposals: list[Proposal], with_learned: bool = True) -> Plan:
    """The plan as the proposals should leave it (what the written file must load as)."""
    endpoints = list(plan.endpoints)
    for p in proposals:
        update: dict = {}
        if p.required_fields is not None:
            update["required_fields"] = list(p.required_fields)
        if p.timeout is not None:
            update["timeout"] = p.timeout
        if with_learned and p.learned is not None:
            update["learned"] = p.learned
        endpoints[p.index] = endpoints[p.index].model_copy(update=update)
    return plan.model_copy(update={"endpoints": endpoints})


def write(path: str | os.PathLike[str], plan: Plan, proposals: list[Proposal],
          out: str | os.PathLike[str] | None = None, with_learned: bool = True) -> Path:
    """Apply the proposals to the plan file at ``path`` (or write the result to ``out``).

    The new text must load as exactly the plan the proposals describe, else nothing is
    written (ValueError, PlanError). The file is replaced atomically: an interrupted write
    never leaves half a plan.
    """
    import yaml

    source = Path(path)
    text = apply(source.read_text(), proposals, with_learned)
    target = Path(out) if out is not None else source
    got = parse_plan(yaml.safe_load(text), str(target))
    if _normal(got) != _normal(expected_plan(plan, proposals, with_learned)):
        raise ValueError(f"{source}: the edited plan would not load as proposed (an unusual layout?); "
                         "nothing written: apply the proposals above by hand")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _normal(plan: Plan) -> dict:
    """A comparable form: "18ms" reads back as 0.018000000000000002."""
    data = plan.model_dump(mode="json")
    for ep in data["endpoints"]:
        if ep.get("learned"):
            for k in ("p50", "p95", "p99", "max"):
                ep["learned"][k] = round(ep["learned"][k], 6)
    return data


__all__ = ["PlanError", "Proposal", "apply", "describe", "expected_plan", "propose", "table", "write"]
