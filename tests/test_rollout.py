"""The rollout's state machine: the real loop, state directory and control port, with a
scripted gate and a recording weight action (the real ones have their own tests).

Phases last an hour, run at --time-scale 0.0004 (1.44 s each), so the whole walk takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from canary_guard.rollout.engine import Rollout, plan_digest
from canary_guard.rollout.gate import Decision
from canary_guard.rollout.server import make_server, serve_in_background
from canary_guard.rollout.state import APPLY, WAIT, StateDir, StateError
from canary_guard.rollout.watch import Sighting, WebhookWatch, rollback_actions
from canary_guard.rollout.weights import Applied
from conftest import CLI, free_port, need_binary

from canary_guard.plan import load_plan, parse_plan

SCALE = 0.0004
DEADLINE = 60  # generous: the machine is shared


def make_plan(tmp_path: Path, approval: tuple[str, ...] = (), **rollout) -> object:
    data = yaml.safe_load(load_plan().to_yaml())
    data["phases"] = [{"name": f"phase_{i + 1}", "traffic_percent": w, "duration": "1h"}
                      for i, w in enumerate((5, 10, 25, 50))] + [{"name": "phase_5", "traffic_percent": 100}]
    for phase in data["phases"]:
        phase["approval"] = phase["name"] in approval
    record = tmp_path / "rollback.log"
    data["actions"]["undo_by_script"] = {"kind": "command", "argv": [sys.executable, "-c",
                                         f"open({str(record)!r}, 'a').write('undo\\n')"]}
    data["rollout"] = {"weight": {"kind": "command", "argv": ["true", "{weight}"]},
                       "rollback": "undo_by_script", "gate_interval": "10s", **rollout}
    return parse_plan(data)


class ScriptedGate:
    """Answers from a script per phase (1-based); the last answer repeats."""

    def __init__(self, script: dict[int, list[str]] | None = None, default: str = "promote"):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.default = default
        self.calls: list[tuple[int, float | None]] = []

    def decide(self, phase: int, since: float | None) -> Decision:
        self.calls.append((phase, since))
        answers = self.script.get(phase)
        decision = (answers.pop(0) if len(answers) > 1 else answers[0]) if answers else self.default
        return Decision(decision, [f"scripted {decision}"])


class Weights:
    def __init__(self, fail: int = 0):
        self.applied: list[float] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, spec, weight, previous=None, *, phase="", client=None) -> Applied:
        with self.lock:
            if self.fail:
                self.fail -= 1
                return Applied(False, weight, None, "injected failure")
            self.applied.append(weight)
            return Applied(True, weight, weight, f"set {weight}")


class StubWatch:
    def __init__(self):
        self.seen: Sighting | None = None
        self.errors: list[str] = []

    def enabled(self) -> bool:
        return True

    def look(self, since: float) -> Sighting | None:
        return self.seen


def engine(plan, tmp_path, gate=None, weights=None, watch=None, scale=SCALE) -> Rollout:
    r = Rollout(plan, StateDir(tmp_path / "state"), gate or ScriptedGate(), watch=watch, time_scale=scale,
                weight_fn=weights or Weights())
    r.open()
    return r


def run_in_thread(r: Rollout) -> tuple[threading.Thread, list[int]]:
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(r.run()), daemon=True)
    t.start()
    return t, out


def wait_for(cond, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events(r: Rollout) -> list[str]:
    return [e["event"] for e in r.store.audit_trail()]


def test_walks_every_phase_in_order_and_completes(tmp_path):
    plan, weights, gate = make_plan(tmp_path), Weights(), ScriptedGate()
    r = engine(plan, tmp_path, gate, weights)
    started = time.monotonic()
    assert r.run() == 0
    assert weights.applied == [5, 10, 25, 50, 100]
    assert [p for p, _ in gate.calls] == [1, 2, 3, 4]  # the last phase has no duration: no gate
    assert r.state.status == "completed" and r.state.weight == 100
    # every phase ran its (scaled) hour before the gate was asked
    starts = [e["started"] for e in r.store.audit_trail() if e["event"] == "weight_applied"]
    assert all(b - a >= 3600 * SCALE - 0.05 for a, b in zip(starts, starts[1:], strict=False))
    assert time.monotonic() - started >= 4 * 3600 * SCALE
    ev = events(r)
    assert ev[0] == "started" and ev[-1] == "completed"
    assert ev.count("promote") == 4 and ev.count("gate") == 4
    # the gate judged each phase from the time its weight was applied
    assert [since for _, since in gate.calls] == starts[:4]
    assert not (tmp_path / "rollback.log").exists()


def test_hold_asks_again_and_never_promotes_on_a_doubt(tmp_path):
    plan, weights = make_plan(tmp_path), Weights()
    gate = ScriptedGate({2: ["hold", "error", "hold", "promote"]})
    r = engine(plan, tmp_path, gate, weights)
    assert r.run() == 0
    assert [p for p, _ in gate.calls] == [1, 2, 2, 2, 2, 3, 4]
    assert weights.applied == [5, 10, 25, 50, 100]
    holds = [e for e in r.store.audit_trail() if e["event"] == "gate" and e["decision"] != "promote"]
    assert [h["decision"] for h in holds] == ["hold", "error", "hold"]
    # asked again after gate_interval (10s scaled is below the 1s floor: 1s)
    times = [e["ts"] for e in r.store.audit_trail() if e["event"] == "gate" and e["phase"] == "phase_2"]
    assert all(b - a >= 0.95 for a, b in zip(times, times[1:], strict=False))


def test_a_long_hold_pauses_for_a_person_and_resume_goes_on(tmp_path):
    plan = make_plan(tmp_path, hold_timeout="1h")
    gate = ScriptedGate({1: ["hold"]})
    r = engine(plan, tmp_path, gate)
    t, out = run_in_thread(r)
    wait_for(lambda: r.state.status == "paused", "the hold timeout")
    assert "held phase_1" in r.state.pause_reason
    calls = len(gate.calls)
    time.sleep(1.5)
    assert len(gate.calls) == calls  # paused: the gate is not asked
    gate.script[1] = ["promote"]
    assert r.resume() == (True, "running")
    t.join(DEADLINE)
    assert out == [0] and r.state.status == "completed"


def test_gate_rollback_sets_weight_zero_then_runs_the_rollback_action_once(tmp_path):
    plan, weights = make_plan(tmp_path), Weights()
    r = engine(plan, tmp_path, ScriptedGate({3: ["rollback"]}), weights)
    assert r.run() == 3
    assert weights.applied == [5, 10, 25, 0]
    assert (tmp_path / "rollback.log").read_text() == "undo\n"
    st = r.state
    assert st.status == "rolled_back" and st.weight == 0 and st.rollback["action_ok"] is True
    assert st.rollback["source"] == "gate" and st.rollback["phase"] == "phase_3"
    ev = events(r)
    assert ev.index("rollback_start") < ev.index("rollback_action_start") < ev.index("rollback_action_done")
    # a finished rollout stays finished: running it again changes nothing
    r.store.unlock()
    again = engine(plan, tmp_path, ScriptedGate(), weights)
    assert again.run() == 3 and weights.applied == [5, 10, 25, 0]
    assert (tmp_path / "rollback.log").read_text() == "undo\n"


def test_a_weight_that_cannot_go_to_zero_still_runs_the_rollback_and_says_so(tmp_path):
    class NoZero(Weights):
        def __call__(self, spec, weight, previous=None, *, phase="", client=None):
            if weight == 0:
                return Applied(False, 0, None, "ingress: connection refused")
            return super().__call__(spec, weight, previous, phase=phase)

    r = engine(make_plan(tmp_path), tmp_path, ScriptedGate({1: ["rollback"]}), NoZero())
    assert r.run() == 3
    assert (tmp_path / "rollback.log").read_text() == "undo\n"  # the undo still ran
    assert r.state.weight == 5 and "connection refused" in r.state.rollback["weight_error"]
    assert events(r).count("weight_failed") == 3
    from canary_guard.rollout.cli import render_status

    assert "the weight could NOT be set to 0: ingress: connection refused" in render_status(r.snapshot())


def test_a_webhook_rollback_stops_the_rollout_without_a_second_undo(tmp_path):
    plan, weights, watch = make_plan(tmp_path), Weights(), StubWatch()
    r = engine(plan, tmp_path, ScriptedGate({2: ["hold"]}), weights, watch=watch)  # stays in phase 2
    t, out = run_in_thread(r)
    wait_for(lambda: r.state.phase == 1 and r.state.step == WAIT, "phase 2")
    watch.seen = Sighting("webhook", "the webhook ran rollback (run 7, succeeded) for CanaryErrorRateHigh")
    t.join(DEADLINE)
    assert out == [3] and r.state.status == "stopped"
    assert weights.applied == [5, 10, 0]
    assert not (tmp_path / "rollback.log").exists()
    assert "webhook_rollback_seen" in events(r)


def test_a_gate_rollback_leaves_the_undo_to_a_webhook_already_rolling_back(tmp_path):
    class Late(StubWatch):  # the alert fires while the rollout sets the weight to 0
        def look(self, since):
            return self.seen if r.state.status == "rolling_back" else None

    watch = Late()
    watch.seen = Sighting("alerts", "alert CanaryErrorRateHigh is firing with action rollback")
    r = engine(make_plan(tmp_path), tmp_path, ScriptedGate({1: ["rollback"]}), watch=watch)
    assert r.run() == 3
    assert not (tmp_path / "rollback.log").exists()
    assert "left to the webhook" in r.state.rollback["action"]


def test_restart_mid_phase_neither_reapplies_nor_skips(tmp_path):
    class Stuck(ScriptedGate):  # phase 2's gate never answers: the rollout dies in phase 2
        release = threading.Event()

        def decide(self, phase, since):
            if phase == 2:
                self.release.wait(DEADLINE)
                return Decision("hold", ["gone"])
            return super().decide(phase, since)

    plan, weights, gate = make_plan(tmp_path), Weights(), Stuck()
    first = engine(plan, tmp_path, gate, weights, scale=0.0008)  # 2.9 s phases
    t, _ = run_in_thread(first)
    wait_for(lambda: first.state.phase == 1 and first.state.step == WAIT, "phase 2")
    started = first.state.phase_started
    first.store.unlock()  # what the kernel does when the process dies
    saved = json.loads((tmp_path / "state" / "state.json").read_text())
    assert saved["phase"] == 1 and saved["step"] == WAIT and saved["phase_started"] == started
    # the old loop stops without acting (it saves once more: the file is put back as it was)
    first.state.status = "aborted"
    gate.release.set()
    t.join(DEADLINE)
    (tmp_path / "state" / "state.json").write_text(json.dumps(saved))
    weights2, gate2 = Weights(), ScriptedGate()
    second = Rollout(plan, StateDir(tmp_path / "state"), gate2, weight_fn=weights2)
    second.open()
    assert second.state.phase_started == started and second.scale == 0.0008
    assert second.run() == 0
    assert weights.applied == [5, 10]
    assert weights2.applied == [25, 50, 100]  # phase 2's 10% was not applied again, none skipped
    assert gate2.calls[0] == (2, started)  # phase 2 kept its start
    resumed = next(e for e in second.store.audit_trail() if e["event"] == "resumed")
    assert "is not applied again" in resumed["note"]


def test_restart_with_a_weight_not_confirmed_applies_it_again(tmp_path):
    plan = make_plan(tmp_path)
    store = StateDir(tmp_path / "state")
    r = engine(plan, tmp_path)
    r.state.phase, r.state.step, r.state.weight = 2, APPLY, 10
    store.save(r.state)
    r.store.unlock()
    weights = Weights()
    again = Rollout(plan, store, ScriptedGate(), weight_fn=weights)
    again.open()
    assert again.run() == 0
    assert weights.applied == [25, 50, 100]


def test_a_rollback_action_cut_off_by_a_crash_is_not_run_again(tmp_path):
    plan = make_plan(tmp_path)
    store = StateDir(tmp_path / "state")
    r = engine(plan, tmp_path)
    r.state.status = "rolling_back"
    r.state.rollback = {"source": "gate", "reason": "x", "stage": "action_started", "at": 1,
                        "phase": "phase_1"}
    store.save(r.state)
    r.store.unlock()
    again = Rollout(plan, store, ScriptedGate())
    again.open()
    assert again.run() == 3
    assert not (tmp_path / "rollback.log").exists()
    assert again.state.rollback["needs_review"] is True
    assert "rollback_action_interrupted" in events(again)


def test_approval_waits_for_a_person(tmp_path):
    plan, weights = make_plan(tmp_path, approval=["phase_3", "phase_5"]), Weights()
    r = engine(plan, tmp_path, ScriptedGate(), weights)
    assert r.approve(2) == (False, "phase_2 needs no approval (phases with approval: phase_3, phase_5)")
    assert r.approve(5)[0]  # ahead of time
    t, out = run_in_thread(r)
    wait_for(lambda: r.state.status == "awaiting_approval", "approval")
    time.sleep(0.5)
    assert weights.applied == [5, 10] and r.state.phase == 2
    assert r.approve(3) == (True, "phase_3 approved")
    t.join(DEADLINE)
    assert out == [0] and weights.applied == [5, 10, 25, 50, 100]
    assert events(r).count("approval_needed") == 1  # phase 5 was approved beforehand


def test_a_failing_weight_action_is_retried_then_pauses(tmp_path):
    weights = Weights(fail=3)
    r = engine(make_plan(tmp_path), tmp_path, ScriptedGate(), weights)
    t, out = run_in_thread(r)
    wait_for(lambda: r.state.status == "paused", "the pause")
    assert "failed 3 times" in r.state.pause_reason and weights.applied == []
    assert r.state.weight is None
    r.resume()
    t.join(DEADLINE)
    assert out == [0] and weights.applied == [5, 10, 25, 50, 100]


def test_one_process_per_state_directory_and_the_plan_must_match(tmp_path):
    plan = make_plan(tmp_path)
    engine(plan, tmp_path)
    with pytest.raises(StateError, match="in use by pid"):
        engine(plan, tmp_path)
    other = make_plan(tmp_path, approval=["phase_2"])
    assert plan_digest(other) != plan_digest(plan)
    fresh = StateDir(tmp_path / "state")
    fresh.lock = lambda: None  # the lock is tested above; here, the plan check
    with pytest.raises(StateError, match="other phases"):
        Rollout(other, fresh, ScriptedGate()).open()
    with pytest.raises(StateError, match="time-scale"):
        Rollout(plan, fresh, ScriptedGate(), time_scale=0.5).open()


def test_rollback_actions_are_the_undos_and_sequences_holding_one(tmp_path):
    plan = make_plan(tmp_path)
    assert rollback_actions(plan) == ["emergency_rollback", "rollback", "undo_by_script"]
    w = WebhookWatch(plan, "http://127.0.0.1:9")
    assert w.alerts_query() == ('ALERTS{alertstate="firing",'
                                'action=~"emergency_rollback|rollback|undo_by_script"}')


def test_control_port_cli_and_metrics(tmp_path):
    plan = make_plan(tmp_path, approval=["phase_2"])
    r = engine(plan, tmp_path, ScriptedGate({3: ["hold"]}))  # it stays in phase 3 until the abort
    port = free_port()
    server = make_server(r, "127.0.0.1", port, token="s3cret")
    serve_in_background(server)
    url = f"http://127.0.0.1:{port}"
    t, out = run_in_thread(r)
    env = {"CANARY_GUARD_ROLLOUT_TOKEN": "s3cret", "PATH": "/usr/bin:/bin"}

    def cli(*args: str, token: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "rollout", *args, "--url", url], capture_output=True, text=True,
                              timeout=60, env=env if token else {"PATH": "/usr/bin:/bin"})

    try:
        wait_for(lambda: r.state.status == "awaiting_approval", "approval of phase 2")
        assert httpx.post(f"{url}/approve", json={}).status_code == 401  # no token
        denied = cli("pause", token=False)
        assert denied.returncode == 1 and "bearer token" in denied.stderr
        status = cli("status")
        assert status.returncode == 0, status.stderr
        assert "AWAITING_APPROVAL" in status.stdout and "[10%(approval)]" in status.stdout
        assert cli("pause", "--reason", "lunch").returncode == 0
        assert r.state.status == "paused" and r.state.pause_reason == "lunch"
        again = cli("pause")
        assert again.returncode == 1 and "cannot pause a rollout that is paused" in again.stderr
        metrics = httpx.get(f"{url}/metrics").text
        assert 'canary_guard_rollout_status{status="paused"} 1.0' in metrics
        assert 'canary_guard_rollout_phase{phase="phase_2"} 2.0' in metrics
        assert "canary_guard_rollout_canary_weight_ratio 0.05" in metrics
        assert 'canary_guard_rollout_last_decision{decision="promote"} 1.0' in metrics
        promtool = need_binary("promtool")
        check = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
        assert cli("resume").returncode == 0
        assert cli("approve", "--phase", "2").returncode == 0
        wait_for(lambda: r.state.phase >= 2, "phase 3")
        assert cli("abort", "--reason", "enough").returncode == 0
        t.join(DEADLINE)
        assert out == [4] and r.state.status == "aborted" and r.state.weight == 0
        audit = cli("status", "--audit", "50")
        assert "aborted" in audit.stdout and "approved" in audit.stdout
        offline = subprocess.run([*CLI, "rollout", "status", "--state-dir", str(tmp_path / "state"),
                                  "--json"], capture_output=True, text=True, timeout=60)
        assert json.loads(offline.stdout)["status"] == "aborted"
    finally:
        server.shutdown()


def test_run_refuses_bad_usage(tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(make_plan(tmp_path).to_yaml())
    base = [*CLI, "rollout", "run", "--plan", str(plan_file), "--state-dir", str(tmp_path / "s")]
    cases = [
        ([], "give --prometheus URL"),
        (["--prometheus", "http://127.0.0.1:9", "--listen", "0.0.0.0:0"], "not a loopback address"),
        (["--prometheus", "http://127.0.0.1:9", "--time-scale", "2"], "--time-scale"),
    ]
    for extra, message in cases:
        proc = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 1 and message in proc.stderr, (extra, proc.stderr)
    bare = make_plan(tmp_path).model_copy(update={"rollout": None})
    plan_file.write_text(bare.to_yaml())
    proc = subprocess.run([*base, "--prometheus", "http://127.0.0.1:9"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "no rollout section" in proc.stderr
