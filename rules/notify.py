"""The plan's ``notify`` section as Alertmanager receivers and routes, built as data.

Each channel is one receiver using Alertmanager's own integration (``slack_configs``,
``email_configs``, ``pagerduty_configs``, ``webhook_configs``) and one route that matches
canary-guard's alerts (by name: the plan's triggers and canary-guard's own) at the channel's
severities, with ``continue: true`` so that every channel that wants an alert gets it. The
webhook's routes also continue, so a rollback reaches the webhook *and* people; canary-guard's
own alerts never reach the webhook (their ``action`` label names the action that failed, and
the webhook must not run it again).

The notification text (what fired, on which track and endpoint, the measured value, what the
webhook is doing, the runbook) is one Go template, written here once and used by every
channel. It reads the ``value`` and ``webhook_action`` annotations when an alert has them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from canary_guard.contract import (
    ALERT_ACTION_FAILED,
    ALERT_WEBHOOK_ACTIONS_FAILING,
    ALERT_WEBHOOK_DOWN,
)
from canary_guard.durations import format_duration
from canary_guard.plan import (
    Command,
    DisableFeature,
    Http,
    KubectlRollback,
    Page,
    Plan,
    Sequence,
)
from canary_guard.plan.notify import SEVERITIES, Channel, Email, PagerDuty, Slack, Webhook

RECEIVER_PREFIX = "canary-guard-"
OWN_ALERTS = (ALERT_ACTION_FAILED, ALERT_WEBHOOK_ACTIONS_FAILING, ALERT_WEBHOOK_DOWN)
# People get one message per alert name and track, listing every endpoint in it: ten failing
# endpoints are one message, not ten.
PEOPLE_GROUP_BY = ["alertname", "track"]

# -- the text a person reads --------------------------------------------------------------------

TITLE = (
    '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] '
    "{{ .CommonLabels.alertname }}"
    "{{ if .CommonLabels.track }} on {{ .CommonLabels.track }}{{ end }}"
    "{{ if .CommonLabels.endpoint }} / {{ .CommonLabels.endpoint }}{{ end }}"
)

# One block per alert. Go's text/template trims with {{- and -}}; kept explicit for clarity.
ALERT_TEXT = (
    "{{ range .Alerts }}"
    '{{ if eq .Status "firing" }}FIRING{{ else }}RESOLVED{{ end }}: {{ .Labels.alertname }}'
    "{{ if .Labels.severity }} ({{ .Labels.severity }}){{ end }}\n"
    "Track: {{ or .Labels.track \"-\" }}   Endpoint: {{ or .Labels.endpoint \"-\" }}\n"
    "{{ if .Annotations.summary }}{{ .Annotations.summary }}\n{{ end }}"
    "{{ if .Annotations.value }}Measured: {{ .Annotations.value }}\n{{ end }}"
    "{{ if .Annotations.description }}{{ .Annotations.description }}\n{{ end }}"
    '{{ if eq .Status "firing" }}'
    "Webhook action: {{ if .Annotations.webhook_action }}{{ .Annotations.webhook_action }}"
    "{{ else if .Labels.action }}{{ .Labels.action }}{{ else }}none{{ end }}\n"
    "{{ end }}"
    "{{ if .Annotations.incident_url }}Incident: {{ .Annotations.incident_url }}\n{{ end }}"
    "{{ if .Annotations.runbook_url }}Runbook: {{ .Annotations.runbook_url }}\n{{ end }}"
    'Since: {{ .StartsAt.UTC.Format "2006-01-02 15:04:05" }} UTC'
    '{{ if eq .Status "resolved" }}, resolved {{ .EndsAt.UTC.Format "2006-01-02 15:04:05" }} UTC{{ end }}\n'
    "\n"
    "{{ end }}"
)

# PagerDuty severities: Alertmanager passes this string on; "page" is not one of PagerDuty's.
PAGERDUTY_SEVERITY = (
    '{{ if eq .CommonLabels.severity "warning" }}warning'
    '{{ else if eq .CommonLabels.severity "info" }}info{{ else }}critical{{ end }}'
)


def receiver_name(suffix: str) -> str:
    return RECEIVER_PREFIX + suffix


def alert_names(plan: Plan) -> list[str]:
    """Every alert canary-guard raises for this plan: its triggers', then its own."""
    return list(dict.fromkeys([t.alert for t in plan.triggers] + list(OWN_ALERTS)))


def trigger_alert_names(plan: Plan) -> list[str]:
    return list(dict.fromkeys(t.alert for t in plan.triggers))


def _alternatives(values: list[str]) -> str:
    """A matcher regex matching exactly these values (alert names and severities are [A-Za-z0-9])."""
    for v in values:
        if not re.fullmatch(r"[A-Za-z0-9_]+", v):
            raise ValueError(f"{v!r} cannot be matched safely")
    return "|".join(values)


def _scope(plan: Plan, ch: Channel) -> list[str]:
    matchers = [f'alertname=~"{_alternatives(alert_names(plan))}"']
    if set(ch.severities) != set(SEVERITIES):
        matchers.append(f'severity=~"{_alternatives(list(dict.fromkeys(ch.severities)))}"')
    return matchers


# -- receivers ------------------------------------------------------------------------------------


def _slack(plan: Plan, ch: Slack) -> dict[str, Any]:
    return {"slack_configs": [{
        "api_url_file": ch.api_url_file,
        "channel": ch.channel,
        "username": ch.username,
        "send_resolved": ch.send_resolved,
        "color": '{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}',
        "title": TITLE,
        "title_link": "{{ (index .Alerts 0).Annotations.runbook_url }}",
        "text": ALERT_TEXT,
        "footer": f"canary-guard · plan {plan.name}",
    }]}


def _email(plan: Plan, ch: Email) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "to": ", ".join(ch.to),
        "from": ch.from_,
        "smarthost": ch.smarthost,
        "require_tls": ch.require_tls,
        "send_resolved": ch.send_resolved,
        "headers": {"Subject": f"{TITLE} [canary-guard {plan.name}]"},
        "text": ALERT_TEXT,
        # html/template escapes every value; <pre> keeps the same layout as the text part
        "html": "<pre style=\"font-family: monospace\">" + ALERT_TEXT + "</pre>",
    }
    if ch.auth_username:
        cfg["auth_username"] = ch.auth_username
        cfg["auth_password_file"] = ch.auth_password_file
    tls = {k: v for k, v in (("ca_file", ch.tls_ca_file), ("server_name", ch.tls_server_name)) if v}
    if tls:
        cfg["tls_config"] = tls
    return {"email_configs": [cfg]}


def _pagerduty(plan: Plan, ch: PagerDuty) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "routing_key_file": ch.routing_key_file,
        "send_resolved": ch.send_resolved,
        "severity": PAGERDUTY_SEVERITY,
        "client": f"canary-guard ({plan.name})",
        "description": TITLE,
        "details": {"alerts": ALERT_TEXT},
    }
    if ch.url:
        cfg["url"] = ch.url
    return {"pagerduty_configs": [cfg]}


def _webhook(plan: Plan, ch: Webhook) -> dict[str, Any]:
    cfg: dict[str, Any] = {"url": ch.url, "send_resolved": ch.send_resolved, "max_alerts": ch.max_alerts}
    if ch.credentials_file:
        cfg["http_config"] = {"authorization": {"type": "Bearer",
                                                "credentials_file": ch.credentials_file}}
    return {"webhook_configs": [cfg]}


_BUILDERS: dict[type, Callable[[Plan, Any], dict[str, Any]]] = {
    Slack: _slack, Email: _email, PagerDuty: _pagerduty, Webhook: _webhook}


def receivers(plan: Plan) -> list[dict[str, Any]]:
    """One Alertmanager receiver per channel of the plan's notify section."""
    return [{"name": receiver_name(suffix), **_BUILDERS[type(ch)](plan, ch)}
            for suffix, ch in plan.notify.channels()]


def routes(plan: Plan) -> list[dict[str, Any]]:
    """One route per channel, each continuing to the next: every channel that wants it hears."""
    return [{
        "receiver": receiver_name(suffix),
        "matchers": _scope(plan, ch),
        "group_by": list(PEOPLE_GROUP_BY),
        "group_wait": format_duration(plan.alertmanager.group_wait),
        "continue": True,
    } for suffix, ch in plan.notify.channels()]


def webhook_scope(plan: Plan) -> str:
    """The matcher that keeps the webhook's routes to the plan's trigger alerts."""
    return f'alertname=~"{_alternatives(trigger_alert_names(plan))}"'



# -- what the webhook does, in words (the webhook_action annotation) --------------------------------


def action_summary(plan: Plan, name: str) -> str:
    """The plan action an alert makes the webhook run, as a person reads it."""
    spec = plan.actions.get(name)
    if spec is None:
        return f"{name} (not an action of the plan: the webhook records it and runs nothing)"
    if isinstance(spec, Sequence):
        return f"{name}: " + ", then ".join(_step(plan, s) for s in spec.steps)
    return f"{name}: {_step(plan, name)}"


def _step(plan: Plan, name: str) -> str:
    s = plan.actions.get(name)
    if isinstance(s, KubectlRollback):
        text = f"kubectl rollout undo deployment/{s.deployment} -n {s.namespace}"
        text += f" --to-revision {s.to_revision}" if s.to_revision else ""
    elif isinstance(s, DisableFeature):
        which = {"alert": "the feature of the alert's endpoint", "all": "every endpoint's feature"}
        what = which.get(s.features, None) if isinstance(s.features, str) else ", ".join(s.features)
        text = f"disable {what} ({s.path} on the service)"
    elif isinstance(s, Page):
        text = "no automatic change: a person reviews it on the webhook's incident page"
    elif isinstance(s, Command):
        text = f"run the plan's command {s.argv[0].rsplit('/', 1)[-1]}"
    elif isinstance(s, Http):
        text = f"{s.method} the plan's HTTP call"
    else:
        text = name
    # Prometheus renders annotations as Go templates: plan text must not open one
    return text.replace("{{", "{ {").replace("}}", "} }")
