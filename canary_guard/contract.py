"""The metric contract: every name that one component writes and another reads.

The exporter exposes these series, the rule generator, the gate, the dashboard and the demo
query them, and the tests check them; each of them imports the names from here and never
spells them out, so that a rename is one edit. Label values come from small fixed sets
(outcomes, error reasons, PII kinds) so that every label combination can exist from the first
scrape and cardinality stays bounded: tracks x endpoints x a few dozen.
"""

from __future__ import annotations

# -- labels ----------------------------------------------------------------------------------

TRACK = "track"  # a deployment track of the plan: canary, stable, ...
ENDPOINT = "endpoint"  # a plan endpoint's name
OUTCOME = "outcome"  # one of OUTCOMES
REASON = "reason"  # one of ERROR_REASONS (probe errors) or SKIP_REASONS (skipped ticks)
KIND = "kind"  # one of PII_KINDS
LE = "le"

# -- the exporter's probe series ---------------------------------------------------------------

PROBE_DURATION = "canary_probe_duration_seconds"  # histogram; _bucket, _sum, _count
PROBES = "canary_probes_total"  # counter {track, endpoint, outcome}
PROBE_ERRORS = "canary_probe_errors_total"  # counter {track, endpoint, reason}
NULL_STREAK = "canary_probe_null_streak"  # gauge {track, endpoint}
PII_EXPOSURES = "canary_probe_pii_exposures_total"  # counter {track, endpoint, kind}
PROBE_SUCCESS = "canary_probe_success"  # gauge {track, endpoint}
LAST_PROBE = "canary_probe_last_timestamp_seconds"  # gauge {track, endpoint}
STATUS_CODE = "canary_probe_status_code"  # gauge {track, endpoint}
PROBES_SKIPPED = "canary_probe_skipped_total"  # counter {track, endpoint, reason}

INFO = "canary_guard_info"  # gauge {version, plan}
EXPORTER_INFLIGHT = "canary_guard_exporter_inflight_probes"
EXPORTER_SERIES = "canary_guard_exporter_series"
EXPORTER_START_TIME = "canary_guard_exporter_start_time_seconds"
EXPORTER_SCRAPES = "canary_guard_exporter_scrapes_total"  # counter {format, encoding}
# How /metrics was served: the exposition format and the content encoding the scraper accepted.
EXPOSITION_FORMATS: tuple[str, ...] = ("openmetrics", "text")
EXPOSITION_ENCODINGS: tuple[str, ...] = ("gzip", "identity")

# A probe's outcome: exactly one per probe.
OUTCOMES: tuple[str, ...] = ("success", "error", "null", "disabled")
SUCCESS, ERROR, NULL, DISABLED = OUTCOMES
# Outcomes that say something about the release: a feature switched off (503 "not enabled")
# says nothing, so ratios leave it out and alerts resolve after a feature-flag rollback.
COUNTED_OUTCOMES: tuple[str, ...] = (SUCCESS, ERROR, NULL)

ERROR_REASONS: tuple[str, ...] = (
    "timeout",  # no complete answer within the probe timeout
    "connect",  # connection refused, DNS, unreachable
    "tls",  # TLS handshake or certificate
    "reset",  # connection dropped mid-request or mid-response
    "http_3xx",  # redirects are not followed: a probe must hit the endpoint itself
    "http_4xx",
    "http_5xx",
    "rate_limited",  # 429
    "invalid_json",  # 2xx whose body is not JSON
    "body_too_large",  # more than probe.max_body_bytes
    "other",  # anything else (malformed HTTP, ...)
)
PII_KINDS: tuple[str, ...] = ("email", "ssn", "phone", "card")
SKIP_REASONS: tuple[str, ...] = ("busy", "backoff")  # previous probe still running / 429 backoff

# Probe latency buckets (seconds): fine below 100 ms where healthy endpoints answer, and
# around the plan's thresholds (0.5 s SLO, 1 s trigger, 2.5-5 s timeouts).
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)

# The probe's User-Agent: probes also appear in the service's own request counters; this is
# how the service's operators tell them apart from users.
PROBE_USER_AGENT_PRODUCT = "canary-guard-probe"

# -- the service's own request metrics (the plan's traffic section; RecoveryOS by default) ----

# What the reference service exposes at GET /metrics (prometheus-client, default buckets); the
# sandbox exposes exactly these, and the plan's traffic section defaults to them.
SERVICE_REQUESTS = "recoveryos_requests_total"  # counter {endpoint, version, env, status}
SERVICE_DURATION = "recoveryos_request_duration_seconds"  # histogram {endpoint, version, env}
SERVICE_ERRORS = "recoveryos_errors_total"  # counter {endpoint, version, env, error_type}
SERVICE_ACTIVE = "recoveryos_active_requests"  # gauge {endpoint, version, env}
SERVICE_STATUS = "status"  # SERVICE_STATUSES
SERVICE_STATUSES: tuple[str, ...] = ("success", "error")
SERVICE_ERROR_TYPE = "error_type"  # SERVICE_ERROR_TYPES
SERVICE_VERSION, SERVICE_ENV = "version", "env"
# Why a request failed, as the sandbox labels it. feature_disabled: a feature switched off by
# its flag answers 503 "not enabled" (says nothing about the release, like the probe outcome
# "disabled").
SERVICE_ERROR_TYPES: tuple[str, ...] = (
    "bad_request", "unauthorized", "not_found", "rate_limited", "internal", "feature_disabled",
    "unavailable", "reset", "timeout", "invalid_response",
)
FEATURE_DISABLED = "feature_disabled"
# Endpoint label values of the service's own routes besides the plan's endpoints.
SERVICE_ROUTES: tuple[str, ...] = ("system_status", "elite_metrics")

# Recording rules on the service's traffic: ``track_endpoint:canary_traffic_requests:rate5m``...
# (always labelled track and endpoint with plan names, whatever the service calls them).
TRAFFIC_PREFIX = "canary_traffic"

# -- alert labels (set by the rule generator, read by Alertmanager routing and the webhook) ---

ALERT_SEVERITY = "severity"  # critical | warning | info | page
ALERT_TRIGGER = "trigger"  # the plan trigger's name
ALERT_ACTION = "action"  # the plan action the webhook runs
ALERT_SOURCE = "source"  # probe | traffic: which evidence fired the alert
SOURCES: tuple[str, ...] = ("probe", "traffic")

# -- the webhook's own series ------------------------------------------------------------------

WEBHOOK_PREFIX = "canary_guard_webhook_"
WEBHOOK_NOTIFICATIONS = WEBHOOK_PREFIX + "notifications_total"  # {status}
WEBHOOK_REJECTED = WEBHOOK_PREFIX + "rejected_total"  # {reason}
WEBHOOK_ALERTS = WEBHOOK_PREFIX + "alerts_total"  # {action, status}
WEBHOOK_DUPLICATES = WEBHOOK_PREFIX + "duplicates_total"
WEBHOOK_COALESCED = WEBHOOK_PREFIX + "coalesced_total"  # new firings recorded against an incident
WEBHOOK_ACTIONS = WEBHOOK_PREFIX + "actions_total"  # {action, outcome}: finished runs
WEBHOOK_ATTEMPTS = WEBHOOK_PREFIX + "action_attempts_total"  # {action, outcome}
WEBHOOK_ACTION_DURATION = WEBHOOK_PREFIX + "action_duration_seconds"  # histogram {action}
WEBHOOK_COOLDOWN_REFUSALS = WEBHOOK_PREFIX + "cooldown_refusals_total"  # {action}
WEBHOOK_ESCALATIONS = WEBHOOK_PREFIX + "escalations_total"  # {action}
WEBHOOK_QUEUE_DEPTH = WEBHOOK_PREFIX + "queue_depth"
WEBHOOK_NEEDS_REVIEW = WEBHOOK_PREFIX + "needs_review"
# Incidents whose action failed/partly failed/was refused/needs review and nobody decided since.
WEBHOOK_OPEN_ESCALATIONS = WEBHOOK_PREFIX + "open_escalations"
WEBHOOK_ALERTMANAGER_POSTS = WEBHOOK_PREFIX + "alertmanager_posts_total"  # {outcome}: ok | error
WEBHOOK_DECISIONS = WEBHOOK_PREFIX + "decisions_total"  # {decision}: people's decisions

# How a run of a plan action ended (webhook runs; the outcome label of WEBHOOK_ACTIONS).
RUN_OUTCOMES: tuple[str, ...] = ("succeeded", "failed", "partial", "refused", "cooldown",
                                 "needs_review", "unknown_action", "dry_run")
# Outcomes a person must look at.
RUN_OUTCOMES_NEEDING_A_PERSON: tuple[str, ...] = ("failed", "partial", "refused", "needs_review")

# -- canary-guard's own alerts -------------------------------------------------------------------

# Alerts about canary-guard itself start with this prefix (plan triggers may not): Alertmanager
# sends them to people, never to the webhook's actions, so a failed action is never re-run by
# its own escalation.
OWN_ALERT_PREFIX = "CanaryGuard"
# Posted by the webhook to Alertmanager (API v2) while an incident whose action failed, partly
# failed, was refused or needs review is unresolved. Labels: severity, run, action, track,
# endpoint, plan (bounded: plan names and run ids of open incidents only).
ALERT_ACTION_FAILED = OWN_ALERT_PREFIX + "ActionFailed"
ALERT_RUN = "run"
# Generated rules on the webhook's own series and its scrape job.
ALERT_WEBHOOK_ACTIONS_FAILING = OWN_ALERT_PREFIX + "WebhookActionsFailing"
ALERT_WEBHOOK_DOWN = OWN_ALERT_PREFIX + "WebhookDown"
# Prometheus's job name for the webhook's /metrics (deploy/ and the demo scrape it under this).
WEBHOOK_JOB = "canary-guard-webhook"

# -- the rollout's own series (canary-guard rollout: /metrics on its control port) -------------

ROLLOUT_PREFIX = "canary_guard_rollout_"
ROLLOUT_PHASE = ROLLOUT_PREFIX + "phase"  # gauge {phase}: the current phase's number (1-based)
ROLLOUT_PHASES = ROLLOUT_PREFIX + "phases"  # gauge: how many phases the plan has
ROLLOUT_WEIGHT = ROLLOUT_PREFIX + "canary_weight_ratio"  # gauge: canary share of traffic applied, 0-1
ROLLOUT_STATUS = ROLLOUT_PREFIX + "status"  # gauge {status}: 1 for the current status, 0 for the others
ROLLOUT_DECISION = ROLLOUT_PREFIX + "last_decision"  # gauge {decision}: 1 for the last gate decision
ROLLOUT_DECISION_TIME = ROLLOUT_PREFIX + "last_decision_timestamp_seconds"
ROLLOUT_PHASE_START = ROLLOUT_PREFIX + "phase_start_timestamp_seconds"  # when the phase's weight applied
ROLLOUT_PHASE_END = ROLLOUT_PREFIX + "phase_end_timestamp_seconds"  # when its duration is over
ROLLOUT_GATE_RUNS = ROLLOUT_PREFIX + "gate_runs_total"  # counter {decision}: DECISIONS + "error"
ROLLOUT_WEIGHT_CHANGES = ROLLOUT_PREFIX + "weight_changes_total"  # counter {outcome}: ok | failed

# The rollout's status (the status label of ROLLOUT_STATUS).
ROLLOUT_STATUSES: tuple[str, ...] = (
    "running",  # applying a weight, waiting out a phase or asking the gate
    "paused",  # by a person, or after a hold timeout or a failed weight change
    "awaiting_approval",  # the next phase waits for a person's approval
    "rolling_back",  # weight 0, then the rollback action
    "completed",  # the last phase's weight is applied
    "rolled_back",  # the gate decided rollback; the weight is 0 and the rollback action ran
    "stopped",  # the webhook rolled the release back; the weight is 0
    "aborted",  # a person aborted; the weight is 0
)
# What the gate can answer (the decision label of ROLLOUT_DECISION and ROLLOUT_GATE_RUNS).
DECISIONS: tuple[str, ...] = ("promote", "hold", "rollback")
