"""Helpers for the webhook tests: plans, notifications, a recording kubectl, the service."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from conftest import CLI, free_port

from canary_guard.plan import load_plan

TOKEN = "webhook-test-token-6f1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# A stand-in for kubectl: appends its argv as one JSON line to $KUBECTL_RECORD, then
#   KUBECTL_FAIL=N       exits 1 on its first N calls (counted in the record file)
#   KUBECTL_FAIL_STDERR  text written to stderr when failing
#   KUBECTL_HANG=S       sleeps up to S seconds (returns early once its parent has died)
#   KUBECTL_HANG_FILE=F  the same, for as many seconds as the file F says, while F exists
KUBECTL = """#!{python}
import json, os, sys, time
record = os.environ["KUBECTL_RECORD"]
with open(record, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
calls = sum(1 for _ in open(record))
hang = float(os.environ.get("KUBECTL_HANG", "0") or 0)
hang_file = os.environ.get("KUBECTL_HANG_FILE")
if hang_file and os.path.exists(hang_file):
    hang = float(open(hang_file).read() or 0)
if hang:
    parent, deadline = os.getppid(), time.monotonic() + hang
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.05)
if calls <= int(os.environ.get("KUBECTL_FAIL", "0") or 0):
    sys.stderr.write(os.environ.get("KUBECTL_FAIL_STDERR", "error: the server is unavailable") + "\\n")
    sys.exit(1)
print('deployment.apps/recoveryos rolled back')
"""


def install_kubectl(tmp_path: Path) -> tuple[Path, Path]:
    """A recording kubectl in tmp_path/bin; returns (bin dir, record file)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "kubectl"
    script.write_text(KUBECTL.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bindir, tmp_path / "kubectl-calls.jsonl"


def kubectl_env(bindir: Path, record: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECTL_RECORD": str(record), **extra}


def kubectl_calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def plan_data(service_url: str = "http://127.0.0.1:9", **webhook: Any) -> dict[str, Any]:
    """The shipped plan as data, its HTTP actions pointed at service_url, fast retries."""
    data = yaml.safe_load(load_plan().to_yaml())
    for action in data["actions"].values():
        if action["kind"] == "disable_feature":
            action["url"] = service_url
    data["webhook"]["retry"] = {"attempts": 3, "backoff": 0.05, "max_backoff": 0.2}
    data["webhook"].update(webhook)
    return data


def write_plan(tmp_path: Path, data: dict[str, Any], name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def alert(action: str | None = "rollback", status: str = "firing", fingerprint: str = "f00d",
          starts_at: str = "2024-05-01T12:00:00Z", endpoint: str | None = "edge_ai",
          alertname: str = "CanaryErrorRateHigh", **labels: str) -> dict[str, Any]:
    lab = {"alertname": alertname, "severity": "critical", "track": "canary", **labels}
    if action is not None:
        lab["action"] = action
    if endpoint is not None:
        lab["endpoint"] = endpoint
    return {
        "status": status, "labels": lab,
        "annotations": {"summary": f"{alertname} on {endpoint}", "runbook_url": "https://example/rb"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2024-05-01T12:10:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x", "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    alerts = alerts or (alert(),)
    if status is None:
        status = "firing" if any(isinstance(a, dict) and a.get("status") == "firing" for a in alerts) \
            else "resolved"
    return {
        "receiver": "canary-guard", "status": status, "alerts": list(alerts),
        "groupLabels": {"alertname": "CanaryErrorRateHigh"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "version": "4", "groupKey": '{}:{alertname="CanaryErrorRateHigh"}', "truncatedAlerts": 0,
        "someFutureField": {"tolerated": True},
    }


def start_webhook(procs, tmp_path: Path, plan_path: Path | None, db: Path, *extra: str,
                  env: dict[str, str] | None = None, name: str = "webhook",
                  token: str | None = TOKEN) -> tuple[str, Any]:
    """Start ``canary-guard webhook`` on a free port; return (base URL, process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [*CLI, "webhook", "--listen", f"127.0.0.1:{port}", "--db", str(db), *extra]
    if plan_path is not None:
        argv[len(CLI) + 1:len(CLI) + 1] = ["--plan", str(plan_path)]
    full_env = {"CANARY_GUARD_WEBHOOK_TOKEN": token or "", **(env or {})}
    proc = procs.start(argv, name, ready_url=f"{url}/healthz", env=full_env, timeout=30)
    return url, proc


def post(url: str, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    hdrs = {**AUTH, **(headers or {})}
    if isinstance(body, dict | list):
        return httpx.post(f"{url}/alerts", json=body, headers=hdrs, timeout=10, **kw)
    hdrs.setdefault("Content-Type", "application/json")
    return httpx.post(f"{url}/alerts", content=body, headers=hdrs, timeout=10, **kw)


def actions(url: str, **params: Any) -> list[dict[str, Any]]:
    resp = httpx.get(f"{url}/api/actions", params=params, headers=AUTH, timeout=10)
    resp.raise_for_status()
    return resp.json()["actions"]


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until check() is truthy; fail with ``what`` after timeout (a deadline, not an assert)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")
        time.sleep(0.05)


TERMINAL = {"succeeded", "failed", "partial", "refused", "cooldown", "needs_review", "unknown_action",
            "dry_run"}


def settled(url: str, count: int, **params: Any) -> list[dict[str, Any]]:
    """Wait until at least ``count`` runs exist and none is queued or running."""
    def check():
        runs = actions(url, **params)
        return runs if len(runs) >= count and all(r["status"] in TERMINAL for r in runs) else None
    return wait_for(check, what=f"{count} finished action runs")


def metric(url: str, name: str, **labels: str) -> float:
    """The value of one sample on /metrics (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{want}}}" if want else name
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
