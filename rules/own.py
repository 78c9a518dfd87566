"""canary-guard's own health: alerts on the webhook's failure metrics and on the webhook being down.

A rollback that failed, half-succeeded (``partial``), was refused or was cut off by a restart
(``needs_review``) needs a person, and so does a webhook that Prometheus cannot scrape: no
rollback can run then. These alerts (``CanaryGuard*``) go to people, never to the webhook.
The webhook also raises ``CanaryGuardActionFailed`` itself, for as long as the incident is open
(``webhook/escalate.py``); the counter alert here is the backstop for a webhook that cannot
reach Alertmanager. Like a trigger unit, the rules and their promtool tests sit side by side.
"""

from __future__ import annotations

from canary_guard import contract
from canary_guard.plan import Plan

from . import names
from .cases import Cases
from .model import AlertRule
from .promql import absent_for, selector
from .promtest import AlertCheck, Series, UnitTest, encode
from .templating import expand, literal, value_placeholder

# A failed run stays news for this long (the webhook's own alert stays until a person resolves it).
FAILURE_WINDOW = 3600.0
NEEDING_A_PERSON = contract.RUN_OUTCOMES_NEEDING_A_PERSON


def runbook(plan: Plan, alert: str) -> str:
    return literal(f"{plan.runbook_url}#{alert.lower()}")


def down_for(plan: Plan) -> float:
    """One failed scrape is not an outage: two scrape intervals."""
    return 2 * plan.prometheus.scrape_interval


def alert_rules(plan: Plan) -> list[AlertRule]:
    job = contract.WEBHOOK_JOB
    up = selector("up", job=job)
    base = {"severity": "critical"}
    no_action = ("none: the webhook cannot act while it is down; roll back by hand if a trigger "
                 "fires (see the runbook)")
    failing = "|".join(NEEDING_A_PERSON)
    fails = f'{contract.WEBHOOK_ACTIONS}{{outcome=~"{failing}"}}'
    return [
        # Every replica down (or the only one): nothing acts on Alertmanager's notifications.
        AlertRule(
            contract.ALERT_WEBHOOK_DOWN, f"max({up}) == 0", down_for(plan), {**base, "reason": "down"},
            {"summary": "canary-guard webhook is down: no replica answers",
             "description": f'Prometheus cannot scrape any canary-guard webhook replica (job "{job}"): '
                            "Alertmanager's notifications are not acted on, so no automatic rollback "
                            "runs until one is back.",
             "runbook_url": runbook(plan, contract.ALERT_WEBHOOK_DOWN),
             "webhook_action": no_action}),
        # One replica of several down: the others carry the work (they share the database), but
        # the next failure stops rollbacks. Worth a look, not a 3 a.m. page.
        AlertRule(
            contract.ALERT_WEBHOOK_DOWN, f"{up} == 0 and on () (max({up}) == 1)", down_for(plan),
            {"severity": "warning", "reason": "replica_down"},
            {"summary": "canary-guard webhook replica {{ $labels.instance }} is down",
             "description": f'Prometheus cannot scrape the webhook replica {{{{ $labels.instance }}}} '
                            f'(job "{job}"). The other replicas still act on notifications, exactly '
                            "once; one more failure and no automatic rollback runs.",
             "runbook_url": runbook(plan, contract.ALERT_WEBHOOK_DOWN),
             "webhook_action": "none needed: the other replicas act"}),
        AlertRule(
            contract.ALERT_WEBHOOK_DOWN, f"absent({up})", absent_for(plan), {**base, "reason": "absent"},
            {"summary": "canary-guard webhook is not scraped",
             "description": f'Prometheus has no scrape job "{job}" target: nobody watches whether the '
                            "webhook that runs the rollbacks is up. Add the job (deploy/prometheus/"
                            "prometheus.yml, the webhook's ServiceMonitor).",
             "runbook_url": runbook(plan, contract.ALERT_WEBHOOK_DOWN),
             "webhook_action": no_action}),
        AlertRule(
            contract.ALERT_WEBHOOK_ACTIONS_FAILING,
            f"sum by (action, outcome) (increase({fails}[{names.w(FAILURE_WINDOW)}])) > 0",
            0.0, dict(base),
            {"summary": "canary-guard action {{ $labels.action }} ended {{ $labels.outcome }}",
             "description": "{{ $value | humanize }} run(s) of the plan action {{ $labels.action }} "
                            "ended {{ $labels.outcome }} in the last " + names.w(FAILURE_WINDOW) +
                            ": what was meant to happen (a rollback, a feature disabled) may not "
                            "have happened. Open the webhook's incident page, check the deployment "
                            "and decide: roll back now, disable the feature, or dismiss.",
             "value": value_placeholder("humanize"),
             "runbook_url": runbook(plan, contract.ALERT_WEBHOOK_ACTIONS_FAILING),
             "webhook_action": "none: waiting for a person (the incident page has the decisions)"}),
    ]


def test_cases(plan: Plan, cases: Cases) -> list[UnitTest]:
    s = cases.s
    rules = alert_rules(plan)
    down, replica_down, absent, failing = rules

    def expect(rule: AlertRule, labels: dict[str, str], value: float) -> dict:
        all_labels = {**labels, **rule.labels}
        return {"exp_labels": all_labels,
                "exp_annotations": {k: expand(v, all_labels, value)
                                    for k, v in rule.annotations.items()}}

    inst = {"job": contract.WEBHOOK_JOB, "instance": "webhook:9112"}
    e = cases.e
    # up for 2 scrapes, then down: pending from the first evaluation that sees 0, firing one
    # `for` later; the evaluation before that must stay silent
    went_down = 2 * s
    pending = cases.eval_at(went_down)
    fires = cases.eval_at(pending + down.for_)
    up = Series(selector("up", **inst), encode([1, 1] + [0] * (cases.steps(fires) + 2)))
    webhook_down = UnitTest(
        "canary-guard webhook down: paged after two failed scrapes, not after one", s, [up], [
            AlertCheck(pending, down.alert, []),
            AlertCheck(fires - e, down.alert, []),
            AlertCheck(fires, down.alert, [expect(down, {}, 0)]),
        ])
    # two replicas: the first goes down (a warning about it alone), then the second (the page)
    other = {"job": contract.WEBHOOK_JOB, "instance": "webhook-b:9112"}
    second_down = cases.eval_at(fires + 2 * s)
    both_fire = cases.eval_at(second_down + down.for_)
    n = cases.steps(both_fire) + 2
    first = Series(selector("up", **inst), encode([1, 1] + [0] * n))
    second = Series(selector("up", **other),
                    encode([1] * cases.steps(second_down) + [0] * (n + 2)))
    replicas = UnitTest(
        "canary-guard webhook with two replicas: one down warns about it; both down pages", s,
        [first, second], [
            AlertCheck(fires - e, replica_down.alert, []),
            AlertCheck(fires, replica_down.alert, [expect(replica_down, inst, 0)]),
            AlertCheck(both_fire - e, replica_down.alert, []),  # the page waits its two scrapes
            AlertCheck(both_fire, replica_down.alert, [expect(down, {}, 0)]),
        ])
    fires_absent = cases.eval_at(absent.for_)
    other_job = Series(selector("up", job="some-other-job", instance="x:1"),
                       encode([1] * (cases.steps(fires_absent) + 2)))
    never_scraped = UnitTest(
        "canary-guard webhook never scraped: paged once Prometheus has had time to scrape it", s,
        [other_job],
        [AlertCheck(fires_absent - e, absent.alert, []),
         AlertCheck(fires_absent, absent.alert, [expect(absent, {"job": contract.WEBHOOK_JOB}, 1)])])
    action = plan.triggers[0].action if plan.triggers else "rollback"
    bump = 3  # the partial run finishes at the 3rd scrape
    steps = bump + cases.steps(2 * e) + 2

    def counter(outcome: str, bump_at: int | None) -> Series:
        values = [0.0 if bump_at is None or i < bump_at else 1.0 for i in range(steps)]
        return Series(selector(contract.WEBHOOK_ACTIONS, action=action, outcome=outcome), encode(values))

    series = [counter(o, bump if o == "partial" else None) for o in contract.RUN_OUTCOMES]
    series.append(counter("succeeded", 1))  # success bumps too: it must not page
    series = [x for i, x in enumerate(series) if x.selector not in {y.selector for y in series[i + 1:]}]
    fired = {"action": action, "outcome": "partial"}
    actions_failing = UnitTest(
        "canary-guard action ended partial: people paged; succeeded, cooldown and dry runs are not", s,
        series, [
            AlertCheck(cases.eval_at(bump * s) - e, failing.alert, []),
            # at a scrape: between two, increase() extrapolates past the last sample (1.167)
            AlertCheck(cases.scrape_eval_at(bump * s + e), failing.alert, [expect(failing, fired, 1)]),
        ])
    return [webhook_down, replicas, never_scraped, actions_failing]
