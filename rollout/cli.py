"""``canary-guard rollout``: walk the plan's phases, and control a running rollout.

    canary-guard rollout run --prometheus URL [--state-dir DIR] [--listen 127.0.0.1:9113]
    canary-guard rollout status|pause|resume|abort|approve [--url http://127.0.0.1:9113]

``run`` exits 0 when the last phase is reached, 3 when the release was rolled back (by the
gate or the webhook), 4 when a person aborted, 1 on a usage or state error.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from canary_guard.cli import add_plan_argument, plan_from_args

if TYPE_CHECKING:
    from canary_guard.plan import Plan

DEFAULT_LISTEN = "127.0.0.1:9113"
DEFAULT_URL = f"http://{DEFAULT_LISTEN}"
TOKEN_ENV = "CANARY_GUARD_ROLLOUT_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="walk the phases (long-running)")
    add_plan_argument(run)
    run.add_argument("--prometheus", metavar="URL", default=None,
                     help="Prometheus base URL: the gate's evidence, and firing rollback alerts")
    run.add_argument("--gate-url", metavar="URL", default=None,
                     help="ask a running `canary-guard gate serve` instead of running the gate")
    run.add_argument("--state-dir", metavar="DIR", default="canary-guard-rollout",
                     help="state, audit trail and lock (default ./canary-guard-rollout); "
                          "run again with the same directory to resume")
    run.add_argument("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN,
                     help="control port: status, metrics, pause/resume/abort/approve "
                          f"(default {DEFAULT_LISTEN})")
    run.add_argument("--time-scale", metavar="FACTOR", type=float, default=None,
                     help="multiply phase durations, hold timeout and intervals by FACTOR (0.001: a 24h "
                          "phase lasts 86s) for rehearsals and tests; a resumed rollout keeps its own")
    run.add_argument("--token-env", metavar="NAME", default=TOKEN_ENV,
                     help=f"environment variable with the control port's bearer token (default {TOKEN_ENV})")
    for name, help_text in (("status", "show a rollout's state"),
                            ("pause", "stop advancing (keeps the weight)"),
                            ("resume", "go on after a pause"), ("abort", "set the weight to 0 and stop"),
                            ("approve", "approve the phase waiting for a person (or a later one)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--url", default=DEFAULT_URL,
                       help=f"the rollout's control port (default {DEFAULT_URL})")
        p.add_argument("--token-env", metavar="NAME", default=TOKEN_ENV)
        if name == "status":
            p.add_argument("--state-dir", metavar="DIR", default=None,
                           help="read the state directory instead (works while the rollout is not running)")
            p.add_argument("--json", action="store_true", help="print the state as JSON")
            p.add_argument("--audit", metavar="N", type=int, default=0,
                           help="also show the last N audit entries")
        if name in ("pause", "abort"):
            p.add_argument("--reason", default="", help="recorded in the audit trail")
        if name == "approve":
            p.add_argument("--phase", type=int, default=None,
                           help="phase number (1-based); default: the phase waiting now")


def run(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    if args.rollout_command == "run":
        return _run(args)
    if args.rollout_command == "status":
        return _status(args)
    return _control(args)


# -- run ------------------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    from .engine import Rollout
    from .gate import GateProcess, GateService
    from .server import make_server, serve_in_background
    from .state import StateDir, StateError
    from .watch import WebhookWatch

    plan = plan_from_args(args)
    err = None
    if plan.rollout is None:
        err = "the plan has no rollout section (rollout.weight says how to set the canary's traffic)"
    elif not plan.phases:
        err = "the plan has no phases to walk"
    elif not args.prometheus and not args.gate_url:
        err = "give --prometheus URL (the gate runs here) or --gate-url URL (a running gate serve)"
    elif args.time_scale is not None and not 0 < args.time_scale <= 1:
        err = "--time-scale must be above 0 and at most 1"
    try:
        host, port = parse_listen(args.listen)
    except ValueError as e:
        err = err or str(e)
    if err:
        print(f"canary-guard rollout: {err}", file=sys.stderr)
        return 1
    token = os.environ.get(args.token_env, "").strip() or None
    if token is None and not _loopback(host):
        print(f"canary-guard rollout: --listen {args.listen} is not a loopback address: set {args.token_env} "
              "so that only holders of the token can change traffic", file=sys.stderr)
        return 1
    store = StateDir(args.state_dir)
    watch = WebhookWatch(plan, args.prometheus)
    engine = Rollout(plan, store, gate=None, watch=watch, time_scale=args.time_scale)
    try:
        engine.open()
    except StateError as e:
        print(f"canary-guard rollout: {e}", file=sys.stderr)
        return 1
    if args.gate_url:
        engine.gate = GateService(args.gate_url, engine.spec.gate_timeout)
    else:
        engine.gate = GateProcess(str(write_gate_plan(plan, store.path, engine.scale)), args.prometheus,
                                  engine.spec.gate_timeout)
    try:
        server = make_server(engine, host, port, token)
    except OSError as e:
        print(f"canary-guard rollout: cannot listen on {args.listen}: {e.strerror}", file=sys.stderr)
        return 1
    serve_in_background(server)
    log = logging.getLogger("canary_guard.rollout")
    log.info("control port", extra={"url": f"http://{args.listen}", "state_dir": str(store.path)})

    def stop(signum: int, frame: object) -> NoReturn:  # the state is saved at every step: nothing lost
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        code = engine.run()
    except KeyboardInterrupt:
        log.info("stopped; run again with the same --state-dir to resume")
        return 130
    finally:
        server.shutdown()
        store.unlock()
    st = engine.st
    print(f"rollout {st.status}: phase {plan.phases[st.phase].name}, weight {_pct(st.weight)}",
          file=sys.stderr)
    return code


def write_gate_plan(plan: Plan, state_dir: Path, scale: float) -> Path:
    """The plan the gate judges with: the rollout's own, phase durations scaled with the rollout's
    clock, so that the gate's "has the phase run its duration" agrees with the rollout's."""
    if scale != 1:
        plan = plan.model_copy(update={"phases": [
            p.model_copy(update={"duration": None if p.duration is None else p.duration * scale})
            for p in plan.phases]})
    path = Path(state_dir) / "gate-plan.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# written by canary-guard rollout: the plan the gate judges with\n" + plan.to_yaml())
    os.replace(tmp, path)
    return path


# -- the control commands -------------------------------------------------------------------------


def _request(args: argparse.Namespace, method: str, path: str,
             body: dict[str, Any] | None = None) -> tuple[int, Any]:
    import httpx

    token = os.environ.get(args.token_env, "").strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.request(method, args.url.rstrip("/") + path, json=body, headers=headers, timeout=10)
    except httpx.HTTPError as err:
        raise SystemExit(f"canary-guard rollout: cannot reach the rollout at {args.url}: {err} "
                         "(is `canary-guard rollout run` running? --url?)") from None
    try:
        return resp.status_code, resp.json()
    except ValueError:
        raise SystemExit(f"canary-guard rollout: {args.url}{path} answered HTTP {resp.status_code}, "
                         "not JSON") from None


def _control(args: argparse.Namespace) -> int:
    body: dict = {}
    if getattr(args, "reason", ""):
        body["reason"] = args.reason
    if args.rollout_command == "approve" and args.phase is not None:
        body["phase"] = args.phase
    code, doc = _request(args, "POST", f"/{args.rollout_command}", body)
    if code == 401:
        print(f"canary-guard rollout: {doc.get('error')}", file=sys.stderr)
        return 1
    print(doc.get("message") or doc.get("error"), file=sys.stdout if doc.get("ok") else sys.stderr)
    return 0 if doc.get("ok") else 1


def _status(args: argparse.Namespace) -> int:
    audit: list[dict] = []
    if args.state_dir:
        from .state import StateDir, StateError

        store = StateDir(args.state_dir)
        try:
            st = store.load()
        except StateError as err:
            print(f"canary-guard rollout: {err}", file=sys.stderr)
            return 1
        if st is None:
            print(f"canary-guard rollout: no rollout in {args.state_dir}", file=sys.stderr)
            return 1
        doc = st.to_dict()
        if args.audit:
            audit = store.audit_trail(args.audit)
    else:
        _, doc = _request(args, "GET", "/status")
        if args.audit:
            audit = _request(args, "GET", f"/audit?limit={args.audit}")[1].get("audit", [])
    if args.json:
        print(json.dumps({**doc, **({"audit": audit} if args.audit else {})}, indent=2))
        return 0
    print(render_status(doc))
    for entry in audit:
        extra = {k: v for k, v in entry.items() if k not in ("ts", "event")}
        print(f"  {_when(entry['ts'])}  {entry['event']:<24} {json.dumps(extra)[:200]}")
    return 0


def _pct(w: float | None) -> str:
    return "-" if w is None else f"{w:g}%"


def _when(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def render_status(doc: dict) -> str:
    lines = [f"rollout of plan {doc['plan']}: {doc['status'].upper()}"
             + (f" ({doc['pause_reason']})" if doc.get("pause_reason") else "")]
    if "phase_name" in doc:
        lines.append(f"phase {doc['phase_number']}/{doc['phases']} {doc['phase_name']}: target "
                     f"{_pct(doc['target_weight'])}, applied {_pct(doc['weight'])}"
                     + (f" (effective {_pct(doc['effective'])})" if doc.get("effective") not in
                        (None, doc["weight"]) else ""))
        if doc.get("phase_started"):
            end = doc.get("phase_end")
            lines.append(f"  started {_when(doc['phase_started'])}"
                         + (f", gate from {_when(end)}" if end else ""))
        marks = []
        for i, p in enumerate(doc["plan_phases"]):
            mark = f"{p['traffic_percent']:g}%" + ("(approval)" if p["approval"] else "")
            marks.append(f"[{mark}]" if i == doc["phase"] else mark)
        lines.append("  phases: " + " -> ".join(marks))
    else:
        lines.append(f"phase index {doc['phase']}, step {doc['step']}, applied {_pct(doc['weight'])}")
    last = doc.get("last_decision")
    if last:
        lines.append(f"last gate decision: {last['decision']} for {last['phase']} at {_when(last['at'])}")
        lines += [f"  - {r}" for r in last.get("reasons", [])]
    if doc.get("rollback"):
        rb = doc["rollback"]
        lines.append(f"rollback ({rb['source']}): {rb['reason']}")
        if rb.get("weight_error"):
            lines.append(f"  the weight could NOT be set to 0: {rb['weight_error']}")
        if rb.get("action_ok") is False and not rb.get("needs_review"):
            lines.append("  the rollback action FAILED: see `rollout status --audit 20`")
        if rb.get("needs_review"):
            lines.append("  the rollback action was cut off by a crash and was NOT run again: check by hand")
    for err in doc.get("watch_errors") or []:
        lines.append(f"warning: {err}")
    return "\n".join(lines)
