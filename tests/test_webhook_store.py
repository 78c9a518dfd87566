"""The store's contract, run against both backends: SQLite and a real PostgreSQL 15.

Two store objects on one database stand for two webhook replicas (for SQLite, two
connections to one file in one process: the only way SQLite is ever shared).
"""

from __future__ import annotations

import threading
import time

import pytest
from canary_guard.webhook import payload
from canary_guard.webhook.store import (
    CHANGE,
    EMERGENCY,
    NEEDS_REVIEW,
    PAGE,
    QUEUED,
    ROLLBACK,
    RUNNING,
    SUCCEEDED,
    open_store,
)
from canary_guard.webhook.store.sql import LostLease
from webhook_helpers import alert, notification

PRIORITIES = {"emergency_rollback": EMERGENCY, "rollback": ROLLBACK, "disable_feature": CHANGE, "page": PAGE}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """make() -> a new store on this test's database: call it twice for two replicas."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = str(tmp_path / "store.db")
    stores = []

    def make():
        store = open_store(url, exclusive=False)
        stores.append(store)
        return store

    make.kind = request.param
    yield make
    for store in stores:
        store.close()


def note(*alerts):
    return payload.validate(notification(*alerts))


def record(store, *alerts, coalesce=0.0, now=None):
    return store.record(note(*alerts), "{}", PRIORITIES, coalesce=coalesce, now=now)


def test_a_repeated_delivery_counts_and_queues_nothing(backend):
    store = backend()
    first = record(store, alert(fingerprint="a"))
    again = record(store, alert(fingerprint="a"))
    resolved = record(store, alert(fingerprint="a", status="resolved"))
    (a1,), (a2,), (a3,) = first.alerts, again.alerts, resolved.alerts
    assert (a1.new, a1.duplicate, a1.run_status) == (True, False, QUEUED)
    assert (a2.new, a2.duplicate, a2.run_id) == (False, True, None)
    assert (a3.new, a3.duplicate, a3.run_id) == (False, False, None)  # the resolution is news once
    assert a1.incident_id == a2.incident_id == a3.incident_id
    (incident,) = store.incidents()
    assert incident["deliveries"] == 3 and incident["status"] == "resolved"
    counts = store.counts()
    assert (counts["notifications"], counts["alerts"], counts["incidents"], counts["runs"]) == (3, 3, 1, 1)


def test_unknown_and_missing_actions_are_recorded_not_queued(backend):
    store = backend()
    (a,) = record(store, alert(fingerprint="x", action="no_such_action")).alerts
    (b,) = record(store, alert(fingerprint="y", action=None, alertname="Other")).alerts
    assert a.run_status == b.run_status == "unknown_action"
    assert store.queue_depth() == 0
    assert "no_such_action" in store.actions()[1]["reason"]


def test_two_replicas_record_the_same_alerts_concurrently_one_run_each(backend):
    replicas = [backend(), backend()]
    errors: list[BaseException] = []

    def deliver(store, t):
        try:
            for k in range(15):
                i = (t * 7 + k) % 10
                record(store, alert(fingerprint=f"fp{i}", endpoint=f"e{i}"),
                       alert(fingerprint=f"fp{(i + 3) % 10}", endpoint=f"e{(i + 3) % 10}"))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=deliver, args=(replicas[t % 2], t)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    counts = replicas[0].counts()
    assert counts["notifications"] == 90 and counts["alerts"] == 180
    assert counts["incidents"] == 10 and counts["runs"] == 10
    assert sum(i["deliveries"] for i in replicas[1].incidents()) == 180


def test_each_run_is_claimed_by_exactly_one_replica(backend):
    a, b = backend(), backend()
    for i in range(40):
        record(a, alert(fingerprint=f"r{i}", endpoint=f"e{i}", action="page"))
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(store):
        while True:
            run = store.claim(lease=30)
            if run is None:
                return
            with lock:
                claimed.append((store.owner, run.id))
            store.finish(run.id, SUCCEEDED, "", [])

    threads = [threading.Thread(target=worker, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ids = [rid for _, rid in claimed]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 40
    assert a.counts()["runs_succeeded"] == 40


def test_the_most_urgent_run_is_claimed_first(backend):
    store = backend()
    for n, action in enumerate(["page", "disable_feature", "rollback", "emergency_rollback", "page"]):
        record(store, alert(fingerprint=f"p{n}", action=action, endpoint=f"e{n}"))
    assert store.claim(lease=30, max_priority=ROLLBACK).action == "emergency_rollback"
    assert store.claim(lease=30, max_priority=ROLLBACK).action == "rollback"
    assert store.claim(lease=30, max_priority=ROLLBACK) is None  # that lane takes only rollbacks
    order = [store.claim(lease=30).action for _ in range(3)]
    assert order == ["disable_feature", "page", "page"]
    assert [r["priority"] for r in store.actions()] == [PAGE, EMERGENCY, ROLLBACK, CHANGE, PAGE]


def test_an_expired_lease_is_taken_over_with_the_attempt_that_was_in_flight(backend):
    a, b = backend(), backend()
    record(a, alert(fingerprint="lease", action="emergency_rollback"))
    t0 = time.time()
    run = a.claim(lease=10, now=t0)
    assert run.status == RUNNING and not run.taken_over
    attempt = a.start_attempt(run.id, 0, "rollback", "kubectl_rollback", 1, {"argv": ["kubectl"]})
    assert b.claim(lease=10, now=t0 + 5) is None  # still a's
    assert a.renew(10, now=t0 + 8) == 1
    assert b.claim(lease=10, now=t0 + 15) is None  # renewed until t0 + 18
    taken = b.claim(lease=10, now=t0 + 19)
    assert taken.id == run.id and taken.taken_over
    assert taken.inflight.id == attempt and taken.inflight.step_action == "rollback"
    with pytest.raises(LostLease):  # a, back from a long pause, may no longer touch it
        a.progress(run.id, 1, [{"step": "rollback", "outcome": "ok"}])
    b.interrupt_attempt(attempt, "stopped")
    b.finish(run.id, NEEDS_REVIEW, "interrupted", [])
    assert b.needs_review() == 1
    assert b.actions()[0]["taken_over"] == 1
    assert b.actions()[0]["attempts"][0]["outcome"] == "interrupted"


def test_released_runs_are_taken_over_at_once(backend):
    a, b = backend(), backend()
    record(a, alert(fingerprint="rel"))
    run = a.claim(lease=600)
    assert b.claim(lease=600) is None
    assert a.release() == 1
    taken = b.claim(lease=600)
    assert taken.id == run.id and taken.taken_over and taken.inflight is None


def test_requeue_and_finish_need_the_lease(backend):
    a, b = backend(), backend()
    record(a, alert(fingerprint="q"))
    run = a.claim(lease=600)
    with pytest.raises(LostLease):
        b.finish(run.id, SUCCEEDED, "", [])
    a.requeue(run.id, 0, 1, time.time() - 1, "retry")
    assert a.queue_depth() == 1
    again = b.claim(lease=600)
    assert again.id == run.id and again.attempt == 1 and not again.taken_over
    b.finish(again.id, SUCCEEDED, "", [])
    assert a.run(run.id).status == SUCCEEDED


def test_one_cooldown_holder_among_concurrent_claims(backend):
    replicas = [backend(), backend()]
    results: list[dict | None] = []
    barrier = threading.Barrier(6)

    def claim(store, run_id):
        barrier.wait()
        results.append(store.claim_cooldown("kubectl_rollback:/ns/deployment/app", "rollback", run_id, 600))

    threads = [threading.Thread(target=claim, args=(replicas[i % 2], 100 + i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [r for r in results if r is None]
    assert len(winners) == 1 and len(results) == 6
    holder = {r["run_id"] for r in results if r is not None}
    assert len(holder) == 1
    (winner,) = holder
    # the holder itself may claim again (its retries; a takeover of it), others may not
    assert replicas[0].claim_cooldown("kubectl_rollback:/ns/deployment/app", "rollback", winner, 600) is None
    # once it expired, the next claim takes it over
    later = time.time() + 601
    assert replicas[1].claim_cooldown("kubectl_rollback:/ns/deployment/app", "rollback", 999, 600,
                                      now=later) is None
    assert replicas[0].cooldown("kubectl_rollback:/ns/deployment/app", now=later + 1)["run_id"] == 999


def test_new_firings_of_one_alert_within_the_cooldown_are_one_incident(backend):
    store = backend()
    t0 = time.time()
    first = record(store, alert(fingerprint="flap", starts_at="2024-05-01T12:00:00Z"), coalesce=600, now=t0)
    (f,) = first.alerts
    assert f.run_status == QUEUED
    flaps = []
    for k in range(1, 20):  # a flapping alert: a new startsAt each time
        reply = record(store, alert(fingerprint="flap", starts_at=f"2024-05-01T12:{k:02d}:00Z"),
                       coalesce=600, now=t0 + 30 * k)
        flaps.append(reply.alerts[0])
    assert all(a.new and not a.duplicate and a.run_id is None for a in flaps)
    assert {a.coalesced_into for a in flaps} == {f.incident_id}
    # the same alert on another endpoint, or another alert, is its own incident
    other = record(store, alert(fingerprint="flap2", endpoint="homomorphic"), coalesce=600, now=t0 + 600)
    assert other.alerts[0].run_status == QUEUED and other.alerts[0].coalesced_into is None
    # activity kept the group open: 20 minutes after it started, but 4 minutes after the last firing
    late = record(store, alert(fingerprint="flap", starts_at="2024-05-01T12:30:00Z"), coalesce=600,
                  now=t0 + 30 * 19 + 240)
    assert late.alerts[0].coalesced_into == f.incident_id
    # ten quiet minutes later it is a new incident again
    new = record(store, alert(fingerprint="flap", starts_at="2024-05-01T13:30:00Z"), coalesce=600,
                 now=t0 + 30 * 19 + 240 + 601)
    assert new.alerts[0].coalesced_into is None and new.alerts[0].run_status == QUEUED
    incidents = store.incidents()
    assert [i["firings"] for i in incidents] == [1, 1, 21]
    assert len(store.incidents(merged=True)) == 23
    assert store.counts()["runs"] == 3


def test_a_resolved_first_sighting_never_swallows_a_later_firing(backend):
    store = backend()
    t0 = time.time()
    record(store, alert(fingerprint="r", status="resolved", starts_at="2024-05-01T12:00:00Z"), coalesce=600,
           now=t0)
    (a,) = record(store, alert(fingerprint="r", starts_at="2024-05-01T12:05:00Z"), coalesce=600,
                  now=t0 + 10).alerts
    assert a.run_status == QUEUED and a.coalesced_into is None


def test_coalescing_is_off_with_a_zero_cooldown(backend):
    store = backend()
    for k in range(3):
        (a,) = record(store, alert(fingerprint="z", starts_at=f"2024-05-01T12:0{k}:00Z")).alerts
        assert a.run_status == QUEUED
    assert store.counts()["runs"] == 3


def test_two_replicas_coalesce_concurrent_firings_into_one_run(backend):
    replicas = [backend(), backend()]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def fire(store, k):
        try:
            barrier.wait()
            record(store, alert(fingerprint="c", starts_at=f"2024-05-01T12:00:0{k}Z"), coalesce=600)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=fire, args=(replicas[k % 2], k)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert replicas[0].counts()["runs"] == 1
    (incident,) = replicas[1].incidents()
    assert incident["firings"] == 8


def test_prune_keeps_incidents_and_the_notifications_that_opened_them(backend):
    store = backend()
    for _ in range(3):
        record(store, alert(fingerprint="p", action="page"))
    assert store.prune(time.time() - 3600) == 0
    assert store.prune(time.time() + 1) == 2
    counts = store.counts()
    assert (counts["notifications"], counts["alerts"], counts["incidents"]) == (1, 1, 1)
    (again,) = record(store, alert(fingerprint="p", action="page")).alerts
    assert again.duplicate


def test_attempts_steps_and_escalations_are_recorded(backend):
    store = backend()
    record(store, alert(fingerprint="s", action="emergency_rollback"))
    run = store.claim(lease=30)
    aid = store.start_attempt(run.id, 0, "rollback", "kubectl_rollback", 1, {"argv": ["kubectl", "x"]})
    store.finish_attempt(aid, "ok", False, "exit 0")
    store.progress(run.id, 1, [{"step": "rollback", "outcome": "ok"}])
    store.record_step(run.id, 1, "disable_all_features", "disable_feature", "cooldown", {}, "held")
    store.finish(run.id, "partial", "r", [{"step": "rollback", "outcome": "ok"},
                                          {"step": "disable_all_features", "outcome": "cooldown"}])
    page = store.add_run("page", "escalated", run.incident_id, run.id, priority=ROLLBACK)
    (page_run, done) = store.actions()
    assert (page_run["id"], page_run["escalated_from"], page_run["priority"]) == (page, run.id, ROLLBACK)
    assert done["status"] == "partial" and [a["outcome"] for a in done["attempts"]] == ["ok", "cooldown"]
    assert done["attempts"][0]["command"] == {"argv": ["kubectl", "x"]}
    assert store.next_due() is not None and store.queue_depth() == 1
    assert store.actions(status="partial", endpoint="edge_ai")[0]["id"] == run.id
    assert store.actions(incident=run.incident_id, action="page")[0]["id"] == page


def test_recover_frees_what_a_previous_process_left_running(backend, tmp_path):
    store = backend()
    record(store, alert(fingerprint="left"))
    run = store.claim(lease=600)
    recovered = backend().recover()
    if backend.kind == "sqlite":
        # one process per file: anything running belonged to a process that is gone
        assert recovered == [run.id]
    else:
        assert recovered == []  # another replica may be alive: only an expired lease frees a run


def test_prune_keeps_at_most_the_newest_repeat_deliveries(backend):
    store = backend()
    record(store, alert(fingerprint="open", action="page"))  # the opening delivery: always kept
    for _ in range(25):
        record(store, alert(fingerprint="open", action="page"))
    newest = store.counts()["notifications"]
    assert store.prune(0.0, keep=10, batch=4) == 15  # in small batches, oldest first
    counts = store.counts()
    assert (counts["notifications"], counts["alerts"], counts["incidents"]) == (11, 11, 1)
    assert store.prune(0.0, keep=10) == 0
    (again,) = record(store, alert(fingerprint="open", action="page")).alerts
    assert again.duplicate and store.counts()["notifications"] == newest - 15 + 1
