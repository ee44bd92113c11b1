"""`ratchet supervise` as a real subprocess: inbox, deadlines, crashes, hangs, two supervisors."""

from __future__ import annotations

import os
import signal
from collections import Counter

from supervisor_harness import pid_alive
from waiting import wait_for


def test_an_approval_file_resumes_the_run(env):
    env.start("r1")
    sup = env.supervise()
    row = env.wait_status("r1", "waiting", "review")
    assert (row.waiting_on, row.approvers) == (["approve", "reject"], ["alice"])
    dropped = env.send("r1", "approve", comment="fine")
    env.wait_status("r1", "finished", "done")
    wait_for((env.home.inbox_done / dropped.name).exists, what="the file to be filed in done/")
    received = [r for r in env.records("r1") if r["type"] == "trigger_received"]
    assert [(r["trigger"], r["by"], r["comment"]) for r in received] == [("approve", "alice", "fine")]
    assert sup.poll() is None


def test_a_half_written_file_is_not_read_until_it_is_closed(env):
    env.start("r1")
    env.supervise()
    env.wait_status("r1", "waiting")
    path = env.home.inbox / "slow.json"
    with open(path, "w") as f:
        f.write('{"run": "r1", "trigger": "appr')
        f.flush()
        env.start("r2")  # the supervisor works on meanwhile: a full round-trip passes
        env.wait_status("r2", "waiting")
        assert path.exists() and env.row("r1").status == "waiting"
        f.write('ove", "by": "alice"}')
    env.wait_status("r1", "finished")
    wait_for((env.home.inbox_done / "slow.json").exists, what="slow.json to be filed in done/")


def test_deadlines_fire_on_the_file_clock_and_escalate_an_unhandled_wait(env):
    env.start("r1")
    env.supervise()
    env.wait_status("r1", "waiting", "review")
    env.clock.advance(86400 + 1)
    row = env.wait_status("r1", "escalated", "review")
    assert row.escalation == "timeout"
    wait_for((env.home.escalations / "r1.json").exists, what="the escalation ticket")
    env.send("r1", "reject", by="alice", resolve="skip")  # a skip fires it: an approver of review
    env.wait_status("r1", "finished", "rejected")


def test_a_hung_worker_is_killed_at_its_timeout_and_the_run_resumes(env):
    env.start("r1", hang="prepare")
    env.supervise()
    marker = env.started_marker("r1")
    wait_for(marker.exists, what="the hanging step to start")
    hung = int(marker.read_text())
    env.clock.advance(3)  # past prepare's 2s timeout
    wait_for(lambda: not pid_alive(hung), what="the hung worker to be killed")
    wait_for(lambda: env.row("r1").status == "retrying", what="a retry to be scheduled")
    env.clock.advance(2)  # past the 1s back-off
    env.wait_status("r1", "waiting", "review")
    types = [r["type"] for r in env.records("r1")]
    assert "step_failed" in types or "step_abandoned" in types
    assert [(e["state"], e["attempt"]) for e in env.ledger_lines()] == [("prepare", 1), ("prepare", 2)]


def test_kill_9_of_the_supervisor_mid_step_then_restart_finishes_every_run_once(env):
    gate = env.dir / "gate"
    runs = [f"r{i}" for i in range(5)]
    for run in runs:
        env.start(run, gate=str(gate))
    sup = env.supervise("--workers", "2")
    wait_for(lambda: sum(env.started_marker(r).exists() for r in runs) == 2, what="two steps in flight")
    workers = [int(env.started_marker(r).read_text()) for r in runs if env.started_marker(r).exists()]
    sup.send_signal(signal.SIGKILL)
    sup.wait(10)
    wait_for(lambda: not any(pid_alive(p) for p in workers), what="the workers to die with the supervisor")
    gate.touch()
    env.supervise("--workers", "2")
    for run in runs:
        env.wait_status(run, "waiting", "review", timeout=30)
        env.send(run, "approve")
    for run in runs:
        env.wait_status(run, "finished", "done", timeout=30)
    wait_for(lambda: not env.claimed_files(), what="every claimed file filed")
    effects = Counter(e["key"] for e in env.ledger_lines() if e["effect"])
    assert sorted(effects) == sorted(f"{r}/{s}/1" for r in runs for s in ("prepare", "send"))
    assert set(effects.values()) == {1}


def test_sigterm_stops_cleanly_with_exit_0_and_the_next_start_resumes(env):
    gate = env.dir / "gate"
    env.start("r1", gate=str(gate))
    sup = env.supervise("--grace", "0.2")
    wait_for(env.started_marker("r1").exists, what="the step to start")
    worker = int(env.started_marker("r1").read_text())
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(15) == 0
    assert not pid_alive(worker)
    gate.touch()
    assert env.once().returncode == 0
    assert env.row("r1").state == "review"


def test_two_supervisors_never_advance_the_same_run(env):
    runs = [f"r{i:02d}" for i in range(16)]
    for run in runs:
        env.start(run)
    env.supervise("--workers", "2")
    env.supervise("--workers", "2")
    for run in runs:
        env.wait_status(run, "waiting", "review", timeout=30)
        env.send(run, "approve")
    for run in runs:
        env.wait_status(run, "finished", "done", timeout=30)
    calls = Counter(e["key"] for e in env.ledger_lines())
    assert calls == {f"{r}/{s}/1": 1 for r in runs for s in ("prepare", "send")}
    for run in runs:  # one writer at a time: one step_started per step, one trigger per file
        types = Counter(r["type"] for r in env.records(run))
        assert (types["step_started"], types["trigger_received"]) == (2, 1)
    wait_for(lambda: len(os.listdir(env.home.inbox_done)) == len(runs), what="every file in done/")
    # filing links the file into done/, then unlinks its claimed name: a moment in both
    wait_for(lambda: env.claimed_files() == [], what="every claimed name gone")


def test_once_does_what_is_due_and_exits(env):
    env.start("r1")
    result = env.once()
    assert result.returncode == 0, result.stderr
    assert env.row("r1").status == "waiting"
    env.send("r1", "approve")
    assert env.once().returncode == 0
    assert env.row("r1").status == "finished"
