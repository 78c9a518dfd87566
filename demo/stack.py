"""The whole loop on loopback: sandboxes, exporter, webhook, Prometheus and Alertmanager.

Every component runs as a real process through the shipped command line
(``python -m canary_guard <component> ...``), each in its own session, with its output in a
log file in one temporary directory. Every process is stopped by PID (SIGTERM, then SIGKILL
after a grace period) when the stack stops: at the end, on Ctrl-C, on SIGTERM and at exit.

One derived plan file drives every component: the plan with its demo settings applied,
targets pointed at the sandboxes, the feature-flag actions at the canary sandbox, the
kubectl action at a recording stand-in and the Alertmanager receiver at the webhook.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from canary_guard import contract
from canary_guard.plan import DisableFeature, KubectlRollback, Notify, Plan
from canary_guard.plan.notify import Email, Slack

from .sinks import SlackSink, SmtpSink

CLI = [sys.executable, "-m", "canary_guard"]
HOST = "127.0.0.1"
GRACE = 5.0  # seconds between SIGTERM and SIGKILL

INSTALL_HINT = "apt-get update && apt-get install -y prometheus prometheus-alertmanager"
BINARIES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}

# The recording stand-in for kubectl: appends its argv as one JSON line, answers like kubectl.
KUBECTL_STANDIN = '''#!{python} -S
# canary-guard demo: a recording stand-in for kubectl. It changes nothing; it appends its
# argv as one JSON line to {record} and answers the way `kubectl rollout undo` does.
import json, sys, time
argv = sys.argv[1:]
with open({record!r}, "a") as f:
    f.write(json.dumps({{"time": time.time(), "argv": argv}}) + "\\n")
name = next((a.split("/", 1)[1] for a in argv if a.startswith("deployment/")), "unknown")
print(f"deployment.apps/{{name}} rolled back")
'''


class StackError(RuntimeError):
    """The stack could not be brought up; the message says what to do."""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES.values() if not shutil.which(b)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> Any:
    """GET url and decode JSON (or return text); raises OSError on connection problems."""
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


def http_send(method: str, url: str, payload: object = None, timeout: float = 5.0,
              headers: dict[str, str] | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode(errors="replace")


@dataclass
class Component:
    """One process of the stack: how to start it and how to tell that it is ready."""

    name: str
    argv: list[str]
    url: str
    ready_path: str | None  # None: ready once running
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Stack:
    """Starts, supervises and stops the demo's processes. Use as a context manager."""

    def __init__(self, plan: Plan, workdir: str | Path | None = None, *, keep_workdir: bool = False,
                 log: Callable[[str], object] | None = None, exporters: int = 1,
                 sandbox_args: Sequence[str] = (), settle_timeout: float = 30.0) -> None:
        """``exporters``: how many exporter processes split the probing (``--shard K/N``),
        one scrape target each; ``sandbox_args``: extra options of every sandbox (e.g.
        ``--no-access-log`` at a thousand requests a second); ``settle_timeout``: how long
        ``start`` waits for Prometheus to scrape every target with no alert active."""
        if exporters < 1:
            raise ValueError(f"exporters: {exporters} must be >= 1")
        if missing_binaries():
            raise StackError(
                f"{', '.join(missing_binaries())} not found. Install Prometheus and Alertmanager "
                f"(Debian packages), as root:\n  {INSTALL_HINT}"
            )
        self.source_plan = plan
        self.sandbox_args = list(sandbox_args or [])  # e.g. --slowdown 1.5 for every sandbox
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="canary-guard-demo-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_workdir = keep_workdir or not self._own_dir
        self.logs = self.dir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.log = log or (lambda msg: None)
        self.components: dict[str, Component] = {}
        self.record_file = self.dir / "kubectl-calls.jsonl"
        self.kubectl = self.dir / "bin" / "kubectl"
        self.plan_file = self.dir / "plan.yaml"
        self.rules_dir = self.dir / "rules"
        self.webhook_db = self.dir / "webhook.db"
        self.webhook_token = secrets.token_urlsafe(24)
        self.service_key = secrets.token_urlsafe(24)
        # People: a Slack-compatible sink and an SMTP relay stand in for Slack and the mail relay;
        # Alertmanager delivers to them with its own integrations (demo/sinks.py).
        self.slack: SlackSink | None = None
        self.smtp: SmtpSink | None = None
        self.secrets_dir = self.dir / "secrets"
        self.users_file = self.dir / "webhook-users"
        self.operator = ("demo", secrets.token_urlsafe(12))  # signs in to the webhook's page
        self.smtp_password = secrets.token_urlsafe(18)
        self._stopped = False
        self._ports: dict[str, int] = {}
        self.plan: Plan | None = None
        self.canary_track = (plan.guarded_tracks() or [plan.targets[0].name])[0]
        self.exporters = exporters
        self.sandbox_args = list(sandbox_args)
        self.settle_timeout = settle_timeout

    # -- addresses -----------------------------------------------------------------------

    def port(self, name: str) -> int:
        if name not in self._ports:
            self._ports[name] = free_port()
        return self._ports[name]

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.port(name)}"

    def sandbox_url(self, track: str | None = None) -> str:
        return self.url(f"sandbox-{track or self.canary_track}")

    @property
    def prometheus_url(self) -> str:
        return self.url("prometheus")

    @property
    def alertmanager_url(self) -> str:
        return self.url("alertmanager")

    @property
    def exporter_names(self) -> list[str]:
        """The exporter components: ``exporter``, or ``exporter-0`` ... when sharded."""
        if self.exporters == 1:
            return ["exporter"]
        return [f"exporter-{k}" for k in range(self.exporters)]

    @property
    def exporter_url(self) -> str:
        return self.url(self.exporter_names[0])

    @property
    def webhook_url(self) -> str:
        return self.url("webhook")

    def service_headers(self) -> dict[str, str]:
        """Headers the sandbox wants (the plan's auth, with the demo's generated key)."""
        auth = self.source_plan.auth
        if not auth.token_env:
            return {}
        return {auth.header: f"{auth.scheme} {self.service_key}" if auth.scheme else self.service_key}

    # -- the derived plan ----------------------------------------------------------------

    def derive_plan(self) -> Plan:
        """The plan every component gets: demo settings, loopback addresses, stand-ins."""
        plan = self.source_plan.with_demo_settings()
        canary = self.sandbox_url()
        targets = [t.model_copy(update={"url": self.sandbox_url(t.name)}) for t in plan.targets]
        actions = {}
        for name, action in plan.actions.items():
            if isinstance(action, KubectlRollback):
                action = action.model_copy(update={"kubectl": str(self.kubectl)})
            elif isinstance(action, DisableFeature):
                action = action.model_copy(update={"url": canary})
            actions[name] = action
        alertmanager = plan.alertmanager.model_copy(update={
            "webhook_url": f"{self.webhook_url}/alerts",
            "credentials_file": str(self.dir / "webhook-token"),
        })
        return plan.model_copy(update={
            "targets": targets, "actions": actions, "alertmanager": alertmanager,
            "notify": self._local_notify(plan),
        })

    def _local_notify(self, plan: Plan) -> Notify:
        """The plan's people, delivered to the local sinks (its channel and address kept)."""
        n = plan.notify
        slack = (n.slack or Slack(channel="#canary-guard", api_url_file="/x")).model_copy(
            update={"api_url_file": str(self.secrets_dir / "slack-api-url")})
        email = n.email or Email.model_validate({"to": ["oncall@example.com"], "smarthost": "localhost:25",
                                                 "from": "canary-guard@example.com"})
        email = email.model_copy(update={
            "smarthost": f"{HOST}:{self.port('smtp')}", "require_tls": False,  # loopback, no certificate
            "auth_username": email.from_, "auth_password_file": str(self.secrets_dir / "smtp-password"),
            "tls_ca_file": None, "tls_server_name": None})
        # PagerDuty and other webhooks have no local stand-in: the demo leaves them out
        return Notify(slack=slack, email=email)

    def _write_files(self) -> None:
        self.plan = self.derive_plan()
        self.plan_file.write_text(
            "# Written by canary-guard demo: the plan with its demo settings, on loopback.\n"
            + self.plan.to_yaml()
        )
        (self.dir / "webhook-token").write_text(self.webhook_token + "\n")
        os.chmod(self.dir / "webhook-token", 0o600)
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        (self.secrets_dir / "slack-api-url").write_text(f"http://{HOST}:{self.port('slack')}/services/demo\n")
        # no trailing newline: Alertmanager 0.25 sends the password file byte for byte
        (self.secrets_dir / "smtp-password").write_text(self.smtp_password)
        self.users_file.unlink(missing_ok=True)
        # through the CLI, as a user would (the demo never imports the webhook)
        out = subprocess.run([*CLI, "webhook", "--users", str(self.users_file), "--add-user",
                              self.operator[0], "--role", "operator"], input=self.operator[1] + "\n",
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise StackError(f"adding the demo operator failed:\n{out.stdout}{out.stderr}")
        self.kubectl.parent.mkdir(exist_ok=True)
        self.kubectl.write_text(KUBECTL_STANDIN.format(python=sys.executable, record=str(self.record_file)))
        self.kubectl.chmod(0o755)
        self.record_file.touch()

    def _render_rules(self) -> None:
        out = subprocess.run(
            [*CLI, "rules", "render", "--plan", str(self.plan_file), "--out", str(self.rules_dir)],
            capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0:
            raise StackError(f"canary-guard rules render failed:\n{out.stdout}{out.stderr}")

    def _prometheus_config(self) -> Path:
        plan = self.plan
        assert plan is not None
        rules = self.rules_dir / "canary-guard.rules.yml"
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": _dur(plan.prometheus.scrape_interval),
                "evaluation_interval": _dur(plan.prometheus.evaluation_interval),
                "scrape_timeout": _dur(min(plan.prometheus.scrape_interval, 10.0)),
            },
            "rule_files": [str(rules)],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"{HOST}:{self.port('alertmanager')}"]}]}
            ]},
            "scrape_configs": [
                {"job_name": plan.prometheus.job,
                 "static_configs": [{"targets": [f"{HOST}:{self.port(n)}" for n in self.exporter_names]}]},
                {"job_name": contract.WEBHOOK_JOB,
                 "static_configs": [{"targets": [f"{HOST}:{self.port('webhook')}"]}]},
            ],
        }
        if plan.traffic is not None:
            # the sandboxes' own request metrics, labelled with their track as scraping does
            # in a cluster (deploy/: a PodMonitor copies it from a pod label)
            config["scrape_configs"].append({
                "job_name": plan.traffic.job or f"{plan.service}-traffic", "honor_labels": True,
                "static_configs": [
                    {"targets": [f"{HOST}:{self.port(f'sandbox-{t.name}')}"],
                     "labels": {plan.traffic.track_label: t.name}} for t in plan.targets],
            })
        path = self.dir / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    # -- components ----------------------------------------------------------------------

    def _define(self) -> None:
        plan_arg = ["--plan", str(self.plan_file)]
        service_env = {}
        if self.source_plan.auth.token_env:
            service_env[self.source_plan.auth.token_env] = self.service_key
        if self.source_plan.webhook.service_token_env:
            service_env[self.source_plan.webhook.service_token_env] = self.service_key
        plan = self.plan
        assert plan is not None  # derived by _write_files
        for target in plan.targets:
            name = f"sandbox-{target.name}"
            self._add(name, [*CLI, "sandbox", "--plan", str(self.plan_file),
                             "--listen", f"{HOST}:{self.port(name)}", *self.sandbox_args],
                      "/healthz", service_env)
        for k, name in enumerate(self.exporter_names):
            shard = ["--shard", f"{k}/{self.exporters}"] if self.exporters > 1 else []
            self._add(name, [*CLI, "exporter", *plan_arg, "--listen", f"{HOST}:{self.port(name)}", *shard],
                      "/metrics", service_env)
        self._add("webhook", [*CLI, "webhook", *plan_arg, "--listen", f"{HOST}:{self.port('webhook')}",
                              "--db", str(self.webhook_db), "--users", str(self.users_file),
                              "--alertmanager", self.alertmanager_url, "--external-url", self.webhook_url],
                  "/healthz",
                  {**service_env, self.source_plan.webhook.token_env: self.webhook_token})
        if plan.traffic is not None:
            self.traffic_args()  # defined here, started by the traffic scenarios only
        am_config = self.rules_dir / "alertmanager.yml"
        self._add("alertmanager", [
            shutil.which(BINARIES["alertmanager"]) or BINARIES["alertmanager"], f"--config.file={am_config}",
            f"--storage.path={self.dir / 'alertmanager-data'}",
            f"--web.listen-address={HOST}:{self.port('alertmanager')}",
            f"--web.external-url={self.alertmanager_url}",
            "--cluster.listen-address=",
        ], "/-/ready")
        self._add("prometheus", [
            shutil.which(BINARIES["prometheus"]) or BINARIES["prometheus"],
            f"--config.file={self._prometheus_config()}",
            f"--storage.tsdb.path={self.dir / 'prometheus-data'}",
            f"--web.listen-address={HOST}:{self.port('prometheus')}",
            f"--web.external-url={self.prometheus_url}",
            "--web.enable-lifecycle",
        ], "/-/ready")

    def traffic_args(self, *, rate: float | None = None, canary_percent: float | None = None,
                     endpoints: list[str] | None = None, duration: float = 6 * 3600.0) -> None:
        """(Re)define the simulated users (``canary-guard traffic``): the demo settings unless
        given; bounded by ``duration``. Start them with ``start_component("traffic")``."""
        demo = self.source_plan.demo
        argv = [*CLI, "traffic", "--plan", str(self.plan_file),
                "--rate", f"{rate or demo.traffic_rate:g}",
                "--split", f"{self.canary_track}={canary_percent or demo.traffic_canary_percent:g}",
                "--duration", _dur(duration), "--seed", "1"]
        for ep in endpoints or []:
            argv += ["--endpoint", ep]
        env = {}
        if self.source_plan.auth.token_env:
            env[self.source_plan.auth.token_env] = self.service_key
        self._add("traffic", argv, None, env)

    def _add(self, name: str, argv: list[str], ready_path: str | None,
             env: dict[str, str] | None = None) -> None:
        self.components[name] = Component(name, argv, self.url(name), ready_path, dict(env or {}))

    def start_component(self, name: str, timeout: float = 30.0) -> Component:
        comp = self.components[name]
        if comp.running:
            return comp
        with open(self.logs / f"{name}.log", "ab") as log:
            comp.proc = subprocess.Popen(
                comp.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **comp.env}, start_new_session=True, cwd=self.dir,
            )
        self._wait_ready(comp, timeout)
        return comp

    def _wait_ready(self, comp: Component, timeout: float) -> None:
        assert comp.proc is not None  # started by start_component
        if comp.ready_path is None:  # no HTTP side (the traffic generator): running is ready
            time.sleep(0.5)
            if comp.proc.poll() is not None:
                raise StackError(f"{comp.name} exited with {comp.proc.returncode}:\n{self.tail(comp.name)}")
            return
        deadline = time.monotonic() + timeout
        url = comp.url + comp.ready_path
        while time.monotonic() < deadline:
            if comp.proc.poll() is not None:
                raise StackError(f"{comp.name} exited with {comp.proc.returncode}:\n{self.tail(comp.name)}")
            try:
                urllib.request.urlopen(url, timeout=1).read()
                return
            except urllib.error.HTTPError as err:
                if err.code < 500:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise StackError(f"{comp.name} not ready at {url} within {timeout:.0f}s:\n{self.tail(comp.name)}")

    def stop_component(self, name: str, sig: int = signal.SIGTERM, grace: float = GRACE) -> int | None:
        """Stop one component by its PID (its own process group): sig, then SIGKILL."""
        comp = self.components.get(name)
        if comp is None or comp.proc is None:
            return None
        proc = comp.proc
        if proc.poll() is None:
            _signal(proc.pid, sig)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def restart_component(self, name: str) -> Component:
        self.stop_component(name)
        return self.start_component(name)

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    # -- the whole stack -----------------------------------------------------------------

    def start(self) -> Stack:
        atexit.register(self.stop)
        self._write_files()
        self._render_rules()
        self._define()
        self.slack = SlackSink(port=self.port("slack")).start()
        assert self.plan is not None  # derived by _write_files
        email = self.plan.notify.email
        self.smtp = SmtpSink(port=self.port("smtp"), username=email.auth_username if email else None,
                             password=self.smtp_password).start()
        self.log(f"starting slack sink      {self.slack.url}")
        self.log(f"starting smtp relay      {self.smtp.smarthost}")
        names = [n for n in self.components if n.startswith("sandbox-")]
        names += [*self.exporter_names, "webhook", "alertmanager", "prometheus"]
        for name in names:
            self.log(f"starting {name:<16} {self.components[name].url}")
            self.start_component(name)
        self.wait_quiet(self.settle_timeout)
        return self

    def wait_quiet(self, timeout: float = 30.0) -> None:
        """Wait until Prometheus scrapes every target and no alert is pending or firing.

        Right after Prometheus starts, its rules run before the first scrape, so the
        "no probe data" alert is briefly active; scenarios start from a quiet stack.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                targets = http_get(f"{self.prometheus_url}/api/v1/targets")["data"]["activeTargets"]
                if targets and all(t["health"] == "up" for t in targets) and not self.prometheus_alerts():
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise StackError(f"the stack did not settle within {timeout:.0f}s: alerts "
                         f"{[a['labels'].get('alertname') for a in self.prometheus_alerts()]}")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for name in reversed(list(self.components)):
            self.stop_component(name)
        for sink in (self.slack, self.smtp):
            if sink is not None:
                sink.stop()
        if not self.keep_workdir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading the stack's state -------------------------------------------------------

    def kubectl_calls(self) -> list[dict]:
        """What the kubectl stand-in recorded, one dict (time, argv) per call."""
        if not self.record_file.exists():
            return []
        return [json.loads(line) for line in self.record_file.read_text().splitlines() if line.strip()]

    def prometheus_alerts(self) -> list[dict]:
        return http_get(f"{self.prometheus_url}/api/v1/alerts")["data"]["alerts"]

    def alertmanager_alerts(self) -> list[dict]:
        return http_get(f"{self.alertmanager_url}/api/v2/alerts")

    def actions(self) -> list[dict]:
        """The webhook's audit trail (GET /api/actions): one dict per run, oldest first.

        Each run has ``id``, ``action``, ``status`` (queued, running, succeeded, failed,
        partial, refused, cooldown, needs_review, ...), ``created_at``/``finished_at`` (epoch
        seconds), ``steps`` (outcomes), ``attempts`` (with the ``command`` each ran) and
        ``incident`` (``alertname``, ``track``, ``endpoint``, ...).
        """
        data = http_get(f"{self.webhook_url}/api/actions?limit=10000", timeout=3,
                        headers={"Authorization": f"Bearer {self.webhook_token}"})
        return sorted(data["actions"], key=lambda a: a["id"])

    def system_status(self, track: str | None = None) -> dict:
        return http_get(f"{self.sandbox_url(track)}/elite/system-status", headers=self.service_headers())

    def disabled_features(self, track: str | None = None) -> list[str]:
        feats = self.system_status(track).get("features", {})
        return sorted(n for n, f in feats.items() if isinstance(f, dict) and not f.get("enabled", True))

    def exporter_metrics(self) -> str:
        return http_get(f"{self.exporter_url}/metrics")

    def service_metrics(self, track: str | None = None) -> str:
        """A sandbox's own request metrics (what the traffic triggers judge)."""
        return http_get(f"{self.sandbox_url(track)}/metrics")

    def inject(self, fault: dict[str, Any], track: str | None = None) -> Any:
        return http_send("POST", f"{self.sandbox_url(track)}/-/faults", fault, headers=self.service_headers())

    def clear_faults(self, track: str | None = None) -> None:
        http_send("DELETE", f"{self.sandbox_url(track)}/-/faults", headers=self.service_headers())

    def enable_features(self, features: list[str], track: str | None = None) -> None:
        http_send("POST", f"{self.sandbox_url(track)}/elite/config/enable", {"features": features},
                  headers=self.service_headers())


def _dur(seconds: float) -> str:
    from canary_guard.durations import format_duration

    return format_duration(seconds)


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so that ``finally`` blocks and atexit stop the stack."""

    def _term(signum: int, frame: object) -> NoReturn:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGHUP, _term)
    # Ctrl-C: KeyboardInterrupt, even when started from a script that ignores SIGINT (`cmd &`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
