"""The plan -> the Grafana dashboard and its provisioning files.

Panels read what the alerts read: error rate, latency and availability panels query the same
recording rules (same window) that the plan's triggers are written against, and draw the
trigger thresholds and the SLOs as threshold lines, so what the graph shows crossing the line
is what fires. Raw exporter metrics are used where no recording rule exists (probe rate,
error reasons, null streaks, PII exposures, probe age) and for the webhook's actions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from canary_guard import contract
from canary_guard.durations import format_duration
from canary_guard.plan import Plan, Trigger
from canary_guard.plan.traffic import default_window

from . import grafana as g

DASHBOARD_FILE = "canary-guard-dashboard.json"
DATASOURCE_FILE = "provisioning/datasources/canary-guard.yaml"
PROVIDER_FILE = "provisioning/dashboards/canary-guard.yaml"
DEFAULT_PROMETHEUS_URL = "http://prometheus:9090"
DEFAULT_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/canary-guard"

SEL = 'track=~"$track", endpoint=~"$endpoint"'
TRACK_SEL = 'track=~"$track"'


def _trigger(plan: Plan, kind: str, source: str = "probe") -> Trigger | None:
    return next((t for t in plan.triggers if t.kind == kind and t.source == source), None)


def _window(plan: Plan, trigger: Trigger | None, default: float) -> str:
    return format_duration(plan.trigger_window(trigger) if trigger else default)


def _rule(level: str, family: str, window: str) -> str:
    """A recording rule of the contract with the variables' selector, e.g.
    ``track_endpoint:canary_probes:rate1m{track=~"$track", endpoint=~"$endpoint"}``."""
    return f"{level}:{family}{window}{{{SEL if level == 'track_endpoint' else TRACK_SEL}}}"


def _per_endpoint(title: str, family: str, window: str, **panel: Any) -> dict[str, Any]:
    """A time series of one recording rule per track and endpoint (what the triggers read)."""
    return g.timeseries(title, [g.target(_rule("track_endpoint", family, window), "{{track}} {{endpoint}}")],
                        **panel)


def users(plan: Plan) -> list[tuple[dict, int, int]]:
    """The service's own requests beside the probes: the recording rules the traffic triggers
    read (same window), with their thresholds."""
    t = plan.traffic
    assert t is not None
    err = _trigger(plan, "error_rate", "traffic")
    lat = _trigger(plan, "latency_avg", "traffic")
    w = format_duration(plan.trigger_window(err) if err else default_window(plan))
    lat_w = format_duration(plan.trigger_window(lat)) if lat else w
    fam = contract.TRAFFIC_PREFIX
    # the variables hold plan names: the service's own series match them unless it names
    # its endpoints otherwise (traffic.endpoints)
    where = f'{t.track_label}=~"$track"' + ("" if t.endpoints else f', {t.endpoint_label}=~"$endpoint"')
    errors = [] if t.errors is None else [(g.timeseries(
        "User traffic: errors by type",
        [g.target(f"sum by ({t.track_label}, {t.endpoint_label}, {t.error_type_label}) (rate({t.errors}"
                  f"{{{where}}}[$__rate_interval]))",
                  f"{{{{{t.track_label}}}}} {{{{{t.endpoint_label}}}}} {{{{{t.error_type_label}}}}}")],
        unit="reqps", minimum=0,
        description=f"Why the service's requests failed ({t.errors} by {t.error_type_label}); "
                    f"{', '.join(t.ignored_error_types) or 'none'} do not count against the canary.",
    ), 12, 8)]
    out = [
        (_per_endpoint(
            f"User traffic: requests per endpoint ({w})", f"{fam}_requests:rate", w,
            unit="reqps", minimum=0,
            description=f"Requests per second the service counted itself ({t.requests}): its users' "
                        "and the probes' (User-Agent canary-guard-probe). The canary's share follows "
                        "the phase's weight.",
        ), 12, 8),
        (_per_endpoint(
            f"User traffic: error rate per endpoint ({w})", f"{fam}_error_ratio:ratio_rate", w,
            unit="percentunit", minimum=0,
            steps=g.thresholds(("green", None), ("orange", plan.slos.error_rate),
                               *([("red", err.threshold)] if err and err.threshold else [])),
            description=f"Failed / counted requests over {w}, as the traffic error-rate trigger sees "
                        "them (it fires once the window holds its minimum of requests)."
                        + (f" Line: rollback above {err.threshold:.2%}." if err and err.threshold else ""),
        ), 12, 8),
        *errors,
    ]
    if t.duration:
        out.append((g.timeseries(
            f"User traffic: latency per endpoint ({lat_w})",
            [g.target(_rule("track_endpoint", f"{fam}_duration_seconds:avg_rate", lat_w),
                      "avg {{track}} {{endpoint}}"),
             g.target(_rule("track_endpoint", f"{fam}_duration_seconds:p99_rate", lat_w),
                      "p99 {{track}} {{endpoint}}", ref="B")],
            unit="s", minimum=0,
            steps=g.thresholds(("green", None), ("orange", plan.slos.avg_latency),
                               *([("red", lat.threshold)] if lat and lat.threshold else [])),
            description=f"Average and p99 latency of the service's requests over {lat_w} "
                        f"({t.duration}).",
        ), 12 if errors else 24, 8))
    return out


def dashboard_uid(plan: Plan) -> str:
    uid = re.sub(r"[^a-zA-Z0-9_-]", "-", f"canary-guard-{plan.name}".replace("_", "-"))
    return uid[:40]  # Grafana's limit


def _alert_names(plan: Plan) -> str:
    """The triggers' alerts, and the page raised when a baseline breaches with its guarded track."""
    shared = plan.shared_cause_alert()
    return "|".join(sorted({t.alert for t in plan.triggers} | ({shared} if shared else set()))) \
        or "Canary.*"


def _overview(plan: Plan, alert_names: str) -> list[tuple[dict, int, int]]:
    """Stat panels: phase gates, alerts firing, actions taken, runs to review, PII exposures."""
    has_phases = bool(plan.phases)
    overview: list[tuple[dict, int, int]] = []
    if has_phases:
        overview.append((g.stat(
            "Phase gates",
            [g.target(f'track:canary_phase_gate:all_ok{{{TRACK_SEL}, phase=~"$phase"}}',
                      "{{track}} {{phase}}", instant=True)],
            description="1 when every success criterion of the phase holds over its window "
                        "(track:canary_phase_gate:all_ok); `canary-guard gate` decides promotion "
                        "from the same rules.",
            steps=g.thresholds(("red", None), ("green", 1)),
            mappings=g.value_mappings({"1": ("pass", "green"), "0": ("hold", "red")}),
        ), 8, 5))
    overview += [
        (g.stat(
            "Canary alerts firing",
            [g.target(f'count(ALERTS{{alertstate="firing", alertname=~"{alert_names}", {TRACK_SEL}}}) '
                      "or vector(0)", "firing", instant=True)],
            description="Alerts of the plan's rollback triggers that are firing now.",
            steps=g.thresholds(("green", None), ("red", 1)),
        ), 4, 5),
        (g.stat(
            "Rollback actions in range",
            [g.target("sum(increase(canary_guard_webhook_actions_total[$__range])) or vector(0)",
                      "actions", instant=True)],
            description="Actions the webhook ran (any outcome) in the selected time range.",
            steps=g.thresholds(("green", None), ("orange", 1)),
            unit="none",
        ), 4, 5),
        (g.stat(
            "Action runs needing review",
            [g.target("sum(canary_guard_webhook_needs_review) or vector(0)", "needs review", instant=True)],
            description="Action runs the webhook was interrupted in (restart mid-rollback): a human "
                        "must check what happened (docs/runbook.md). Its HTML page lists them.",
            steps=g.thresholds(("green", None), ("red", 1)),
            unit="none",
        ), 4, 5),
        (g.stat(
            "PII exposures in range",
            [g.target(f"sum(increase(canary_probe_pii_exposures_total{{{SEL}}}[$__range])) or vector(0)",
                      "exposures", instant=True)],
            description="Responses in which the probe found an e-mail address, SSN, phone or card "
                        "number. Any exposure triggers the emergency rollback.",
            steps=g.thresholds(("green", None), ("red", 1)),
            unit="none",
        ), 4, 5),
    ]

    return overview


def _requests(plan: Plan) -> list[tuple[dict, int, int]]:
    """Probe rate and outcomes, the error rate the error-rate trigger reads, errors by reason."""
    slos = plan.slos
    err = _trigger(plan, "error_rate")
    err_w = _window(plan, err, min(plan.windows()))
    err_steps = g.thresholds(("green", None), ("orange", slos.error_rate),
                             *([("red", err.threshold)] if err and err.threshold else []))
    traffic = [
        (g.timeseries(
            "Probe rate per endpoint",
            [g.target(f'sum by (track, endpoint) (rate(canary_probes_total{{{SEL}, outcome!="disabled"}}'
                      "[$__rate_interval]))", "{{track}} {{endpoint}}")],
            unit="reqps", minimum=0,
            description="Counted probes per second (outcome != disabled): the request count of the "
                        "canary's health signal.",
        ), 12, 8),
        (g.timeseries(
            "Probe outcomes",
            [g.target(f"sum by (outcome) (rate(canary_probes_total{{{SEL}}}[$__rate_interval]))",
                      "{{outcome}}")],
            unit="reqps", minimum=0,
            description="success, error, null (a required field missing or null) and disabled "
                        "(the feature was switched off; not counted against the canary).",
        ), 12, 8),
        (_per_endpoint(
            f"Error rate per endpoint ({err_w})", "canary_probe_error_ratio:ratio_rate", err_w,
            unit="percentunit", minimum=0, steps=err_steps,
            description=f"Errors / counted probes over {err_w}, the window the error-rate trigger "
                        f"uses. Lines: SLO {slos.error_rate:.2%}"
                        + (f", rollback above {err.threshold:.2%}." if err and err.threshold else "."),
        ), 12, 8),
        (g.timeseries(
            "Errors by reason",
            [g.target(f"sum by (endpoint, reason) (rate(canary_probe_errors_total{{{SEL}}}"
                      "[$__rate_interval]))", "{{endpoint}} {{reason}}")],
            unit="reqps", minimum=0,
            description="Why probes failed: timeout, connect, reset, http_5xx, http_4xx, "
                        "rate_limited, invalid_json, body_too_large, ...",
        ), 12, 8),
    ]

    return traffic


def _latency(plan: Plan) -> list[tuple[dict, int, int]]:
    """Average latency as the latency triggers read it, p95 and p99 against the SLOs."""
    slos = plan.slos
    shortest = min(plan.windows())
    latency_triggers = [t for t in plan.triggers if t.kind == "latency_avg" and t.source == "probe"]
    lat = min(latency_triggers, key=lambda t: t.threshold or 0, default=None)
    lat_w = _window(plan, lat, shortest)
    short_w = format_duration(shortest)
    lat_steps = g.thresholds(("green", None), ("orange", slos.avg_latency),
                             *([("red", lat.threshold)] if lat and lat.threshold else []))
    latency = [
        (_per_endpoint(
            f"Average latency per endpoint ({lat_w})", "canary_probe_duration_seconds:avg_rate", lat_w,
            unit="s", minimum=0, steps=lat_steps,
            description=f"Mean probe latency over {lat_w}, as the latency triggers see it. Lines: SLO "
                        f"{format_duration(slos.avg_latency)}"
                        + (f", trigger {format_duration(lat.threshold)}." if lat and lat.threshold else "."),
        ), 8, 8),
        (_per_endpoint(
            f"p95 latency per endpoint ({short_w})", "canary_probe_duration_seconds:p95_rate", short_w,
            unit="s", minimum=0, steps=g.thresholds(("green", None), ("red", slos.p95_latency)),
            description=f"95th percentile of probe latency over {short_w} (histogram). "
                        f"Line: SLO p95 < {format_duration(slos.p95_latency)}.",
        ), 8, 8),
        (_per_endpoint(
            f"p99 latency per endpoint ({short_w})", "canary_probe_duration_seconds:p99_rate", short_w,
            unit="s", minimum=0, steps=g.thresholds(("green", None), ("red", slos.p99_latency)),
            description=f"99th percentile of probe latency over {short_w} (histogram). "
                        f"Line: SLO p99 < {format_duration(slos.p99_latency)}.",
        ), 8, 8),
    ]

    return latency


def _correctness(plan: Plan) -> list[tuple[dict, int, int]]:
    """Success rate (track and endpoint), null streaks, PII exposures, probe age."""
    slos = plan.slos
    shortest = min(plan.windows())
    slo_window = format_duration(slos.window)
    avail = _trigger(plan, "availability")
    avail_w = _window(plan, avail, shortest)
    nulls = _trigger(plan, "null_streak")
    short_w = format_duration(shortest)
    avail_steps = g.thresholds(
        ("red", None),
        *([("orange", avail.threshold)] if avail and avail.threshold else []),
        ("green", slos.availability),
    )
    success_targets = [g.target(_rule("track", "canary_probe_availability:ratio_rate", avail_w),
                                f"{{{{track}}}} over {avail_w}")]
    if slo_window != avail_w:
        success_targets.append(g.target(
            _rule("track", "canary_probe_availability:ratio_rate", slo_window),
            f"{{{{track}}}} over {slo_window}", ref="B"))
    null_limit = int(nulls.threshold) if nulls and nulls.threshold is not None else None
    correctness = [
        (g.timeseries(
            "Success rate trend (track)",
            success_targets,
            unit="percentunit", maximum=1, steps=avail_steps, decimals=3,
            description=f"Successful / counted probes of the whole track over {avail_w} (the "
                        f"availability trigger) and {slo_window} (the SLO window). Lines: "
                        + (f"rollback below {avail.threshold:.2%}, " if avail and avail.threshold else "")
                        + f"SLO {slos.availability:.2%}.",
        ), 12, 8),
        (_per_endpoint(
            f"Success rate per endpoint ({short_w})", "canary_probe_availability:ratio_rate", short_w,
            unit="percentunit", maximum=1, decimals=3,
            steps=g.thresholds(("red", None), ("green", slos.availability)),
            description="Successful / counted probes per endpoint.",
        ), 12, 8),
        (g.timeseries(
            "Null response streak",
            [g.target(f"canary_probe_null_streak{{{SEL}}}", "{{track}} {{endpoint}}")],
            unit="none", minimum=0, decimals=0,
            steps=(g.thresholds(("green", None), ("orange", null_limit), ("red", null_limit + 1))
                   if null_limit is not None else None),
            description="Consecutive null responses per endpoint"
                        + (f"; the trigger fires above {null_limit}." if null_limit is not None else "."),
        ), 8, 8),
        (g.timeseries(
            "PII exposures",
            [g.target(f"sum by (track, endpoint, kind) (increase(canary_probe_pii_exposures_total{{{SEL}}}"
                      "[$__rate_interval]))", "{{track}} {{endpoint}} {{kind}}")],
            unit="none", minimum=0, draw="bars", steps=g.thresholds(("green", None), ("red", 1)),
            description="Responses with an unredacted e-mail address, SSN, phone or card number.",
        ), 8, 8),
        (g.timeseries(
            "Time since last probe",
            [g.target(f"time() - canary_probe_last_timestamp_seconds{{{SEL}}}", "{{track}} {{endpoint}}")],
            unit="s", minimum=0,
            steps=g.thresholds(("green", None), ("red", 3 * plan.probe.interval)),
            description=f"Seconds since each endpoint was last probed (every "
                        f"{format_duration(plan.probe.interval)}). A growing line: the exporter or "
                        "its scrape is down (CanaryProbesMissing).",
        ), 8, 8),
    ]

    return correctness


def _rollout(plan: Plan) -> list[tuple[dict, int, int]]:
    """Phase gate criteria, the webhook's actions, and `canary-guard rollout`'s own series."""
    has_phases = bool(plan.phases)
    rollout: list[tuple[dict, int, int]] = []
    if has_phases:
        rollout.append((g.state_timeline(
            "Phase gate criteria",
            [g.target(f'track:canary_phase_gate:ok{{{TRACK_SEL}, phase=~"$phase"}}',
                      "{{track}} {{phase}} {{criterion}}")],
            steps=g.thresholds(("red", None), ("green", 1)),
            mappings=g.value_mappings({"1": ("ok", "green"), "0": ("fail", "red")}),
            description="Each criterion of each phase (availability, latency, error rate, "
                        "all endpoints answering) judged over the phase window.",
        ), 12, 10))
    rollout.append((g.timeseries(
        "Rollback actions taken",
        [g.target("sum by (action, outcome) (increase(canary_guard_webhook_actions_total[$__rate_interval]))",
                  "{{action}} {{outcome}}")],
        unit="none", minimum=0, draw="bars", decimals=0,
        description="Actions the webhook ran, by outcome: kubectl rollout undo, feature disable, page.",
    ), 12 if has_phases else 24, 10))

    if plan.rollout is not None:  # `canary-guard rollout`'s own series (its control port's /metrics)
        rollout.append((g.timeseries(
            "Canary weight (canary-guard rollout)",
            [g.target(f"max({contract.ROLLOUT_WEIGHT})", "canary weight")],
            unit="percentunit", minimum=0,
            description="The canary's share of traffic as the rollout applied it (a replica ratio's "
                        "effective share). Steps up phase by phase; 0 after a rollback or an abort.",
        ), 12, 8))
        rollout.append((g.state_timeline(
            "Rollout phase, status and last gate decision",
            [g.target(f"max by (phase) ({contract.ROLLOUT_PHASE})", "{{phase}}"),
             g.target(f"max by (status) ({contract.ROLLOUT_STATUS}) == 1", "{{status}}"),
             g.target(f"max by (decision) ({contract.ROLLOUT_DECISION}) == 1", "gate: {{decision}}")],
            description="The phase the rollout is in, its status (running, paused, awaiting_approval, "
                        "rolled_back ...) and the gate's last decision. `canary-guard rollout status` "
                        "says why.",
        ), 12, 8))

    return rollout


def _annotations(alert_names: str) -> list[dict[str, Any]]:
    """Grafana's own annotations, the plan's alerts firing and the webhook's actions."""
    return [
            {
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard",
            },
            {
                "name": "Canary alerts", "enable": True, "iconColor": "red",
                "datasource": g.DATASOURCE,
                "expr": f'ALERTS{{alertstate="firing", alertname=~"{alert_names}", {TRACK_SEL}}}',
                "step": "60s", "titleFormat": "{{alertname}}",
                "textFormat": "{{track}} {{endpoint}} trigger={{trigger}} action={{action}}",
                "useValueForTime": False,
            },
            {
                "name": "Rollback actions", "enable": True, "iconColor": "orange",
                "datasource": g.DATASOURCE,
                "expr": "sum by (action, outcome) (increase(canary_guard_webhook_actions_total[2m])) > 0",
                "step": "60s", "titleFormat": "{{action}}", "textFormat": "outcome={{outcome}}",
                "useValueForTime": False,
            },
    ]


def build_dashboard(plan: Plan) -> dict[str, Any]:
    alert_names = _alert_names(plan)
    has_phases = bool(plan.phases)
    sections = [
        (g.row("Overview"), _overview(plan, alert_names)),
        (g.row("Requests and errors"), _requests(plan)),
        *([(g.row("User traffic (the service's own requests)"), users(plan))] if plan.traffic else []),
        (g.row("Latency"), _latency(plan)),
        (g.row("Correctness"), _correctness(plan)),
        (g.row("Rollout"), _rollout(plan)),
    ]

    variables = [
        g.datasource_variable(),
        g.query_variable("track", "Track", "label_values(canary_probes_total, track)"),
        g.query_variable("endpoint", "Endpoint",
                         'label_values(canary_probes_total{track=~"$track"}, endpoint)'),
    ]
    if has_phases:
        variables.append(g.custom_variable("phase", "Phase", [ph.name for ph in plan.phases]))

    return {
        "uid": dashboard_uid(plan),
        "title": f"canary-guard: {plan.service} ({plan.name})",
        "description": plan.description or f"Canary rollout of {plan.service}",
        "tags": ["canary-guard", plan.service],
        "schemaVersion": g.SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [{
            "title": "Runbook", "type": "link", "url": plan.runbook_url, "targetBlank": True,
            "icon": "doc", "tooltip": "What each alert means and what the webhook did",
        }],
        "annotations": {"list": _annotations(alert_names)},
        "templating": {"list": variables},
        "panels": g.layout(sections),
    }


def datasource_provisioning(plan: Plan, prometheus_url: str = DEFAULT_PROMETHEUS_URL) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus",
            "type": "prometheus",
            "uid": "prometheus",
            "access": "proxy",
            "url": prometheus_url,
            "isDefault": True,
            "editable": False,
            # $__rate_interval is at least 4 scrape intervals: tell Grafana the real one.
            "jsonData": {"timeInterval": format_duration(plan.prometheus.scrape_interval),
                         "httpMethod": "POST"},
        }],
    }


def dashboard_provisioning(dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "canary-guard",
            "orgId": 1,
            "folder": "canary-guard",
            "type": "file",
            "disableDeletion": False,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 30,
            "options": {"path": dashboards_path, "foldersFromFilesStructure": False},
        }],
    }


def render(plan: Plan, out: Path, prometheus_url: str = DEFAULT_PROMETHEUS_URL,
           dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> list[Path]:
    """Write the dashboard JSON and both provisioning files under ``out``; return their paths."""
    header = f"# Generated by canary-guard dashboard render from plan {plan.name}: do not edit.\n"
    files = {
        DASHBOARD_FILE: json.dumps(build_dashboard(plan), indent=2) + "\n",
        DATASOURCE_FILE: header + yaml.safe_dump(datasource_provisioning(plan, prometheus_url),
                                                 sort_keys=False),
        PROVIDER_FILE: header + yaml.safe_dump(dashboard_provisioning(dashboards_path), sort_keys=False),
    }
    written = []
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Every PromQL expression of the dashboard as (where, expr): panels, variables, annotations."""
    out = []
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {t['refId']}", t["expr"]))
    for ann in dashboard["annotations"]["list"]:
        if "expr" in ann:
            out.append((f"annotation {ann['name']!r}", ann["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"variable {var['name']!r}", var["definition"]))
    return out
