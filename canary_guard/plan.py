"""The plan: one YAML file that every component reads.

A plan is parsed and validated into the models below; components only ever see the model.
Every validation problem is reported with its field path (``endpoints[3].path: must start
with /``) so that a user can find and fix it.
"""

from __future__ import annotations

import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from .durations import format_duration, parse_duration

DEFAULT_PLAN = "recoveryos.yaml"

NAME_RE = r"^[a-z][a-z0-9_]*$"
ALERT_RE = r"^[A-Z][A-Za-z0-9]*$"

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[str, Field(pattern=NAME_RE, max_length=63)]

TriggerKind = Literal[
    "error_rate",
    "latency_avg",
    "availability",
    "null_streak",
    "pii_exposure",
    "probes_missing",
    "custom",
]
TRIGGER_KINDS: tuple[str, ...] = get_args(TriggerKind)


class PlanError(Exception):
    """A plan that cannot be used. ``problems`` holds one "path: message" line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid plan:\n" + "\n".join(f"  {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    """A deployment track that is probed: ``canary``, ``stable``, ..."""

    name: Name
    url: str
    guarded: bool = False  # rollback triggers watch guarded tracks only

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")


class Auth(_Model):
    """Bearer token for the probed service. The token itself never enters the plan."""

    header: str = "Authorization"
    scheme: str = "Bearer"
    token_env: str | None = None
    token_file: str | None = None

    def token(self) -> str | None:
        """Read the token from the environment or the file; None when neither is set."""
        if self.token_env and os.environ.get(self.token_env):
            return os.environ[self.token_env].strip()
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return None

    def headers(self) -> dict[str, str]:
        token = self.token()
        if not token:
            return {}
        return {self.header: f"{self.scheme} {token}" if self.scheme else token}


class RateLimits(_Model):
    per_endpoint_per_minute: int | None = Field(default=None, gt=0)
    total_per_hour: int | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, gt=0)
    # True when the service exempts the probe's key from its limits (the budget check warns
    # instead of failing then).
    probe_exempt: bool = False


class Probe(_Model):
    interval: PositiveSeconds = 15.0
    timeout: PositiveSeconds = 5.0
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    # The timeout may exceed the interval: a probe still running at its next tick skips that
    # tick (the exporter counts it), so a slow endpoint is measured, not cut off at the interval.
    concurrency: int = Field(default=64, gt=0, le=10_000)


class Endpoint(_Model):
    name: Name
    path: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    feature: Name | None = None  # feature-flag name the service's disable API accepts
    required_fields: list[str] = Field(default_factory=list)  # must be present and not null
    critical: bool = True

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        return v

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if key.lower() == "authorization":
                raise ValueError("put credentials in auth (token_env/token_file), not headers")
        return v


class Criteria(_Model):
    """Success criteria of a phase (and the SLOs they come from)."""

    availability: float = Field(default=0.999, gt=0, le=1)
    avg_latency: PositiveSeconds = 0.5
    error_rate: float = Field(default=0.01, ge=0, lt=1)
    p95_latency: PositiveSeconds = 0.5
    p99_latency: PositiveSeconds = 1.0
    all_endpoints_answering: bool = True
    window: PositiveSeconds = 3600.0  # judged over this range (recording rules, gate)


class Phase(_Model):
    name: Name
    traffic_percent: float = Field(gt=0, le=100)
    duration: Seconds | None = None  # None: the last phase, no end
    criteria: Criteria = Field(default_factory=Criteria)


class Trigger(_Model):
    """A rollback trigger: becomes one alerting rule."""

    name: Name
    kind: TriggerKind
    alert: str = Field(pattern=ALERT_RE)
    action: Name
    severity: Literal["critical", "warning", "info", "page"] = "critical"
    # error_rate/availability: a ratio; latency_avg: seconds (or a duration); null_streak:
    # a count (fires when the streak is greater); pii_exposure: exposures in the window.
    threshold: float | None = None
    window: PositiveSeconds | None = None
    for_: Seconds = Field(default=0.0, alias="for")
    min_probes: int | None = Field(default=None, ge=1)  # None: derived from threshold and rate
    expr: str | None = None  # custom triggers: raw PromQL
    tracks: list[Name] | None = None  # None: the plan's guarded tracks
    summary: str | None = None
    description: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        return v

    @model_validator(mode="after")
    def _by_kind(self) -> Trigger:
        t, kind = self.threshold, self.kind
        if kind == "custom":
            if not self.expr:
                raise ValueError("custom triggers need expr (PromQL)")
            return self
        if self.expr:
            raise ValueError(f"expr is only for custom triggers, not {kind}")
        if kind in ("error_rate", "availability"):
            if t is None:
                raise ValueError("threshold: required (a ratio between 0 and 1)")
            if not 0 < t < 1:
                side = "never fires" if (t >= 1) == (kind == "error_rate") else "always fires"
                raise ValueError(
                    f"threshold: {t} is out of range (0, 1); this trigger {side}"
                )
        elif kind == "latency_avg":
            if t is None or t <= 0:
                raise ValueError("threshold: required, a latency in seconds greater than 0")
        elif kind == "null_streak":
            if t is None or t < 0 or t != int(t):
                raise ValueError("threshold: required, a whole number of responses >= 0")
        elif kind == "pii_exposure":
            if t is not None and t < 0:
                raise ValueError("threshold: must be >= 0 (0 fires on any exposure)")
        return self


class KubectlRollback(_Model):
    kind: Literal["kubectl_rollback"]
    deployment: str
    namespace: str = "default"
    context: str | None = None
    to_revision: int | None = Field(default=None, ge=1)
    kubectl: str = "kubectl"  # a name found on PATH, or an absolute path
    timeout: PositiveSeconds = 60.0


class DisableFeature(_Model):
    kind: Literal["disable_feature"]
    url: str  # the service's base URL
    path: str = "/elite/config/disable"
    # "alert": the feature of the alert's endpoint (mapped through the plan's endpoints);
    # "all": every endpoint's feature; or an explicit list of features.
    features: Literal["alert", "all"] | list[Name] = "alert"
    timeout: PositiveSeconds = 10.0


class Page(_Model):
    kind: Literal["page"]
    url: str | None = None  # optional notification endpoint to POST the incident to
    timeout: PositiveSeconds = 10.0


class Command(_Model):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    timeout: PositiveSeconds = 60.0


class Http(_Model):
    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: PositiveSeconds = 10.0


class Sequence(_Model):
    kind: Literal["sequence"]
    steps: list[Name] = Field(min_length=1)


Action = Annotated[
    KubectlRollback | DisableFeature | Page | Command | Http | Sequence,
    Field(discriminator="kind"),
]


class Retry(_Model):
    attempts: int = Field(default=3, ge=1, le=20)
    backoff: PositiveSeconds = 2.0  # doubled after each failed attempt
    max_backoff: PositiveSeconds = 60.0


class Prometheus(_Model):
    scrape_interval: PositiveSeconds = 15.0
    evaluation_interval: PositiveSeconds = 15.0
    job: str = "canary-guard"


class Alertmanager(_Model):
    group_wait: Seconds = 10.0
    group_interval: PositiveSeconds = 1 * 60.0
    repeat_interval: PositiveSeconds = 4 * 3600.0
    webhook_url: str = "http://canary-guard-webhook:9112/alerts"
    credentials_file: str = "/etc/alertmanager/secrets/canary-guard-webhook-token"


class Webhook(_Model):
    cooldown: Seconds = 600.0
    # Repeat deliveries older than this are pruned from the database (0: keep everything).
    # Incidents, runs and attempts, and the notification that opened each incident, are kept.
    retention: Seconds = 30 * 86400.0
    retry: Retry = Field(default_factory=Retry)
    token_env: str = "CANARY_GUARD_WEBHOOK_TOKEN"
    token_file: str | None = None
    # API key for HTTP actions against the service (disable_feature): read like auth.
    service_token_env: str | None = None
    service_token_file: str | None = None


class Demo(_Model):
    """Fast settings that ``canary-guard demo`` applies on top of the plan."""

    probe_interval: PositiveSeconds = 1.0
    probe_timeout: PositiveSeconds = 2.5  # above the latency threshold, or it could never fire
    scrape_interval: PositiveSeconds = 1.0
    evaluation_interval: PositiveSeconds = 1.0
    group_wait: Seconds = 1.0
    group_interval: PositiveSeconds = 1.0
    gate_window: PositiveSeconds = 60.0
    cooldown: Seconds = 5.0  # the demo runs one incident after another


class Analysis(_Model):
    """How the gate judges evidence: confidence for the phase criteria, and the
    canary-versus-baseline comparison (significance and practical margins)."""

    baseline: Name | None = None  # track to compare with; None: the first target not guarded
    alpha: float = Field(default=0.01, gt=0, lt=1)  # family-wise, Holm-corrected over endpoints
    confidence: float = Field(default=0.95, gt=0, lt=1)  # a criterion passes when shown at this level
    latency_margin: float = Field(default=0.10, ge=0)  # canary median slower by this fraction ...
    latency_effect: float = Field(default=0.147, ge=0, le=1)  # ... or Cliff's delta at least this
    error_margin: float = Field(default=0.005, ge=0, lt=1)  # failure ratio higher by this much
    min_probes: int = Field(default=30, ge=1)  # per endpoint and track before comparing


class Plan(_Model):
    version: Literal[1] = 1
    name: Name
    service: str
    description: str = ""
    runbook_url: str = "https://github.com/canary-guard/canary-guard/blob/main/docs/runbook.md"
    targets: list[Target] = Field(min_length=1)
    auth: Auth = Field(default_factory=Auth)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    probe: Probe = Field(default_factory=Probe)
    endpoints: list[Endpoint] = Field(min_length=1)
    slos: Criteria = Field(default_factory=Criteria)
    triggers: list[Trigger] = Field(default_factory=list)
    actions: dict[Name, Action] = Field(default_factory=dict)
    phases: list[Phase] = Field(default_factory=list)
    prometheus: Prometheus = Field(default_factory=Prometheus)
    alertmanager: Alertmanager = Field(default_factory=Alertmanager)
    webhook: Webhook = Field(default_factory=Webhook)
    demo: Demo = Field(default_factory=Demo)
    analysis: Analysis = Field(default_factory=Analysis)

    # -- cross-field checks: each raises with the path of the offending field ------------

    @model_validator(mode="after")
    def _references(self) -> Plan:
        problems: list[str] = []
        problems += _duplicates("targets", [t.name for t in self.targets])
        problems += _duplicates("endpoints", [e.name for e in self.endpoints])
        problems += _duplicates("triggers", [t.name for t in self.triggers])
        problems += _duplicates("phases", [p.name for p in self.phases])
        track_names = {t.name for t in self.targets}
        if self.analysis.baseline and self.analysis.baseline not in track_names:
            problems.append(f"analysis.baseline: no target named {self.analysis.baseline!r}")
        scrape = self.prometheus.scrape_interval
        for i, trig in enumerate(self.triggers):
            if trig.action not in self.actions:
                known = ", ".join(sorted(self.actions)) or "none"
                problems.append(
                    f"triggers[{i}].action: {trig.action!r} is not defined in actions "
                    f"(defined: {known})"
                )
            for j, track in enumerate(trig.tracks or []):
                if track not in track_names:
                    problems.append(f"triggers[{i}].tracks[{j}]: no target named {track!r}")
            if trig.window is not None and trig.window < scrape:
                problems.append(
                    f"triggers[{i}].window: {format_duration(trig.window)} is shorter than "
                    f"prometheus.scrape_interval ({format_duration(scrape)})"
                )
            if trig.window is not None and trig.window < 2 * self.probe.interval and trig.kind in (
                "error_rate",
                "availability",
                "latency_avg",
            ):
                problems.append(
                    f"triggers[{i}].window: {format_duration(trig.window)} holds fewer than "
                    f"two probes at probe.interval {format_duration(self.probe.interval)}"
                )
            problems += _trigger_reach(self, i, trig)
        for name, action in self.actions.items():
            if isinstance(action, Sequence):
                for j, step in enumerate(action.steps):
                    if step not in self.actions:
                        problems.append(f"actions.{name}.steps[{j}]: no action named {step!r}")
                    elif isinstance(self.actions[step], Sequence):
                        problems.append(
                            f"actions.{name}.steps[{j}]: {step!r} is a sequence; "
                            "sequences do not nest"
                        )
            if isinstance(action, DisableFeature) and isinstance(action.features, list):
                known = {e.feature for e in self.endpoints if e.feature}
                for j, feat in enumerate(action.features):
                    if feat not in known:
                        problems.append(
                            f"actions.{name}.features[{j}]: {feat!r} is no endpoint's feature"
                        )
        if self.triggers and not self.guarded_tracks():
            problems.append("targets: no target is guarded: rollback triggers would watch nothing")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- derived values ----------------------------------------------------------------

    def guarded_tracks(self) -> list[str]:
        return [t.name for t in self.targets if t.guarded]

    def trigger_tracks(self, trigger: Trigger) -> list[str]:
        return list(trigger.tracks) if trigger.tracks else self.guarded_tracks()

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def features(self) -> list[str]:
        """Every endpoint's feature-flag name, in plan order, without repeats."""
        return list(dict.fromkeys(e.feature for e in self.endpoints if e.feature))

    def min_probes(self, trigger: Trigger) -> int:
        """Probes a ratio trigger needs in its window before it may fire.

        With fewer than ceil(1/margin) probes (margin: the error-rate threshold, or
        1 - the availability threshold) a single failed probe already breaches the
        threshold on its own, so one unlucky probe would roll the release back. From
        ceil(1/margin) probes on, it takes at least two failures. Error rate counts the
        probes of one endpoint; availability those of the whole track.
        """
        if trigger.min_probes is not None:
            return trigger.min_probes
        if trigger.kind == "error_rate" and trigger.threshold:
            return math.ceil(round(1 / trigger.threshold, 9))
        if trigger.kind == "availability" and trigger.threshold:
            return math.ceil(round(1 / (1 - trigger.threshold), 9))
        return 1

    def trigger_window(self, trigger: Trigger) -> float:
        """The range, in seconds, a trigger's rule looks back over.

        An explicit ``window`` wins. Otherwise ratio triggers get a window long enough to
        hold 1.5x their minimum probe count at the plan's probe rate (error rate is judged
        per endpoint, availability per track across all endpoints), and the others a short
        window of four scrapes or two probes. Never less than four scrape intervals, so
        that rate() always has samples to work with.
        """
        if trigger.window is not None:
            return trigger.window
        floor = max(4 * self.prometheus.scrape_interval, 2 * self.probe.interval)
        if trigger.kind in ("error_rate", "availability"):
            series = len(self.endpoints) if trigger.kind == "availability" else 1
            need = 1.5 * self.min_probes(trigger) * self.probe.interval / series
            return float(math.ceil(max(need, floor)))
        return float(math.ceil(floor))

    def windows(self) -> list[float]:
        """Every distinct range the rules need: each trigger's window and each gate window."""
        out = {self.trigger_window(t) for t in self.triggers if t.kind != "custom"}
        out.add(self.slos.window)
        out.update(ph.criteria.window for ph in self.phases)
        return sorted(out)

    def probes_in_window(self, window: float) -> float:
        return window / self.probe.interval

    def probe_rate_per_hour(self) -> float:
        """Requests per hour that the exporter sends to one target."""
        return len(self.endpoints) * 3600 / self.probe.interval

    def trigger_warnings(self) -> list[str]:
        """Triggers that look unreachable but are allowed (demo settings produce them)."""
        out = []
        for i, trig in enumerate(self.triggers):
            if trig.kind == "latency_avg" and trig.threshold and trig.threshold >= self.probe.timeout:
                out.append(
                    f"triggers[{i}].threshold: {format_duration(trig.threshold)} is not below "
                    f"probe.timeout ({format_duration(self.probe.timeout)}): probes are cut off at "
                    "the timeout, so the average latency never exceeds it and this trigger never fires"
                )
        return out

    def budget_warnings(self) -> list[str]:
        """Where the probe schedule exceeds the service's documented rate limits."""
        limits, out = self.rate_limits, []
        per_endpoint_minute = 60 / self.probe.interval
        if limits.per_endpoint_per_minute and per_endpoint_minute > limits.per_endpoint_per_minute:
            out.append(
                f"probe.interval: {per_endpoint_minute:.0f} probes/min per endpoint exceed "
                f"rate_limits.per_endpoint_per_minute ({limits.per_endpoint_per_minute})"
            )
        hourly = self.probe_rate_per_hour()
        if limits.total_per_hour and hourly > limits.total_per_hour:
            out.append(
                f"probe.interval: {hourly:.0f} probes/hour per target exceed "
                f"rate_limits.total_per_hour ({limits.total_per_hour})"
                + ("; the plan says the probe's key is exempt" if limits.probe_exempt else
                   "; exempt the probe's API key or raise probe.interval")
            )
        return out

    def to_yaml(self) -> str:
        """The plan as YAML that load_plan reads back to an equal plan (durations in seconds)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)

    def with_demo_settings(self) -> Plan:
        """The plan with the fast demo settings applied (probe, scrape, eval, group_wait)."""
        d = self.demo
        return self.model_copy(
            update={
                "probe": self.probe.model_copy(
                    update={"interval": d.probe_interval, "timeout": d.probe_timeout}
                ),
                "prometheus": self.prometheus.model_copy(
                    update={
                        "scrape_interval": d.scrape_interval,
                        "evaluation_interval": d.evaluation_interval,
                    }
                ),
                "alertmanager": self.alertmanager.model_copy(
                    update={"group_wait": d.group_wait, "group_interval": d.group_interval}
                ),
                "slos": self.slos.model_copy(update={"window": d.gate_window}),
                "webhook": self.webhook.model_copy(update={"cooldown": d.cooldown}),
                "phases": [
                    ph.model_copy(
                        update={"criteria": ph.criteria.model_copy(update={"window": d.gate_window})}
                    )
                    for ph in self.phases
                ],
            }
        )


def _trigger_reach(plan: Plan, i: int, trig: Trigger) -> list[str]:
    """A trigger that can never fire, or always fires, given the probe and scrape rates."""
    out: list[str] = []
    fd, scrape, probe = format_duration, plan.prometheus.scrape_interval, plan.probe
    if trig.kind == "custom":
        return out
    window = plan.trigger_window(trig)
    rate_based = trig.kind in ("error_rate", "availability", "latency_avg", "pii_exposure")
    if rate_based and trig.window is not None and scrape <= trig.window < 2 * scrape:
        out.append(
            f"triggers[{i}].window: {fd(window)} holds fewer than two scrapes at "
            f"prometheus.scrape_interval {fd(scrape)}: rate() needs two samples, so this trigger "
            f"never fires; use at least {fd(2 * scrape)}"
        )
    if trig.kind in ("error_rate", "availability"):
        series = len(plan.endpoints) if trig.kind == "availability" else 1
        capacity = window / probe.interval * series
        need = plan.min_probes(trig)
        if need > capacity + 1e-9:
            field = "min_probes" if trig.min_probes is not None else "window"
            whose = "of one endpoint" if series == 1 else f"of the track's {series} endpoints"
            out.append(
                f"triggers[{i}].{field}: min_probes is {need} but the {fd(window)} window holds at "
                f"most {capacity:g} probes {whose} at probe.interval {fd(probe.interval)}, so this "
                f"trigger never fires; set window to at least "
                f"{fd(math.ceil(need * probe.interval / series))} or lower min_probes"
            )
    if trig.kind == "pii_exposure" and trig.for_ >= window:
        out.append(
            f"triggers[{i}].for: {fd(trig.for_)} is not shorter than the window {fd(window)}: a "
            f"single exposure leaves the window after {fd(window)}, so it would never fire; use "
            "for: 0s (the default) or a longer window"
        )
    if trig.kind == "probes_missing" and trig.threshold is not None:
        cycle = probe.interval + probe.timeout + scrape
        if trig.threshold <= cycle:
            out.append(
                f"triggers[{i}].threshold: {fd(trig.threshold)} is not above one probe cycle "
                f"(probe.interval {fd(probe.interval)} + probe.timeout {fd(probe.timeout)} + "
                f"prometheus.scrape_interval {fd(scrape)} = {fd(cycle)}): the last probe ages past "
                "it between two probes, so this trigger always fires"
            )
    return out


def _duplicates(field: str, names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        if name in seen:
            out.append(f"{field}[{i}].name: {name!r} repeats {field}[{seen[name]}]")
        seen.setdefault(name, i)
    return out


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS and i >= 2 and loc[i - 2] == "actions":
            continue  # pydantic names the union member (actions.NAME.KIND); the user did not
        else:
            out += f".{part}" if out else str(part)
    return out


_UNION_TAGS = {"kubectl_rollback", "disable_feature", "page", "command", "http", "sequence"}


def _problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        path = _format_loc(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        for line in msg.split("\n"):
            # cross-field checks already carry their own path
            problems.append(line if (not path or re.match(r"^[a-z_]+[\[.]", line)) else
                            f"{path}: {line}")
    return problems


def parse_plan(data: Any, source: str = "<plan>") -> Plan:
    if not isinstance(data, dict):
        raise PlanError(source, ["(top level): must be a mapping of plan fields"])
    try:
        return TypeAdapter(Plan).validate_python(data)
    except ValidationError as err:
        raise PlanError(source, _problems(err)) from None


def load_plan(path: str | os.PathLike[str] | None = None) -> Plan:
    """Load and validate a plan file; with no path, the shipped RecoveryOS plan."""
    if path is None:
        text = resources.files("canary_guard").joinpath("plans", DEFAULT_PLAN).read_text()
        source = f"<default plan {DEFAULT_PLAN}>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise PlanError(source, [f"cannot read: {err.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PlanError(source, [f"{where}not valid YAML: {getattr(err, 'problem', err)}"]) from None
    return parse_plan(data, source)


def default_plan_path() -> Path:
    return Path(str(resources.files("canary_guard").joinpath("plans", DEFAULT_PLAN)))
