"""`ratchet cancel` under a real `ratchet supervise`: a run in each status is cancelled; one
mid-step has its worker killed by the supervisor first, and its non-idempotent step is
named "outcome unknown" and never called again; each run's on_cancel runs once."""

from __future__ import annotations

import os
import signal

from engine import faults
from engine.run.runner import Runner
from engine.supervise.message import Message, write_message
from journal import verify

from supervisor_harness import pid_alive
from waiting import wait_for

RUNS = ("waits", "sleeps", "parked", "midstep")


def test_a_run_in_each_status_is_cancelled_and_compensated_once(env):
    gate = env.dir / "gate"
    env.start("waits", "cancelling")
    env.start("sleeps", "cancelling", fail_in="prepare")
    env.start("parked", "cancelling", fatal_in="prepare")
    env.start("midstep", "cancelling", gate=str(gate), gate_in="charge")
    sup = env.supervise("--workers", "2")
    env.wait_status("waits", "waiting", "review")
    env.wait_status("sleeps", "retrying", "prepare")
    env.wait_status("parked", "escalated", "prepare")
    marker = env.started_marker("midstep")
    wait_for(marker.exists, what="the charge step to be in flight (its effect is on the ledger)")
    victim = int(marker.read_text())
    assert env.ticket("parked") is not None

    result = env.cli("cancel", "midstep", "--by", "ops", "--reason", "wrong amount")
    assert result.returncode == 0, result.stderr
    for run_id in ("waits", "sleeps", "parked"):
        write_message(env.home, Message(run=run_id, cancel=True, by="ops", reason=f"cancel {run_id}"))
    for run_id in RUNS:
        wait_for(lambda r=run_id: env.records(r)[-1]["type"] == "compensation_finished",
                 what=f"run {run_id} to be cancelled and compensated")
    wait_for(lambda: not pid_alive(victim), what="the worker holding midstep to be gone")
    assert f"killing worker {victim} holding run midstep" in env.log()
    assert env.log().count("killing worker") == 1  # never the worker delivering the cancel itself

    cancelled = {r: next(x for x in env.records(r) if x["type"] == "cancelled") for r in RUNS}
    assert {r: (c["by"], c["reason"]) for r, c in cancelled.items()} == {
        "waits": ("ops", "cancel waits"), "sleeps": ("ops", "cancel sleeps"),
        "parked": ("ops", "cancel parked"), "midstep": ("ops", "wrong amount")}
    assert cancelled["midstep"]["cut_step"] == {"state": "charge", "attempt": 1,
                                                "idempotency_key": "midstep/charge/1", "outcome_unknown": True}
    assert all("cut_step" not in cancelled[r] for r in ("waits", "sleeps", "parked"))
    assert [r["type"] for r in env.records("midstep")][-4:] == [
        "step_started", "cancelled", "compensation_started", "compensation_finished"]
    assert all([r["type"] for r in env.records(run)].count("compensation_started") == 1 for run in RUNS)
    assert env.ticket("parked") is None
    wait_for(lambda: len(list(env.home.inbox_done.glob("*.json"))) == 4, what="the four cancels to be filed")
    assert not list(env.home.inbox_rejected.iterdir())

    # Nothing runs again: not the cut-off charge once its gate opens, not the retry once due.
    gate.touch()
    env.clock.advance(2 * 3600)
    write_message(env.home, Message(run="waits", cancel=True, by="carol"))  # a sync point: refused, filed
    wait_for(lambda: list(env.home.inbox_rejected.glob("*.error.txt")), what="the late cancel to be refused")
    refused = env.records("waits")[-1]
    assert (refused["type"], refused["trigger"], refused["by"]) == ("trigger_refused", "cancel", "carol")
    calls = [(e["run"], e["state"], e["key"], e["effect"]) for e in env.ledger_lines()]
    assert [c for c in calls if c[1] == "charge" and c[0] == "midstep"] == [
        ("midstep", "charge", "midstep/charge/1", True)]
    assert [c for c in calls if c[0] == "sleeps"] == [("sleeps", "prepare", "sleeps/prepare/1", True),
                                                      ("sleeps", "on_cancel", "sleeps/cancel", True)]
    assert sorted(c for c in calls if c[1] == "on_cancel") == sorted(
        (r, "on_cancel", f"{r}/cancel", True) for r in RUNS)
    assert all(verify(env.home.store.path(r), run_id=r).ok for r in RUNS)
    assert sup.poll() is None


def test_a_cancel_goes_before_the_files_queued_ahead_of_it(env):
    env.start("r1", "cancelling")
    assert env.once().returncode == 0
    assert env.row("r1").status == "waiting"
    approval = env.send("r1", "approve")  # dropped first...
    write_message(env.home, Message(run="r1", cancel=True, by="ops", reason="deal off"))  # ...then the cancel
    assert env.once().returncode == 0
    types = [r["type"] for r in env.records("r1")]
    assert types[-4:] == ["cancelled", "compensation_started", "compensation_finished", "trigger_refused"]
    assert (env.home.inbox_rejected / approval.name).exists()
    assert env.row("r1").status == "cancelled"


def test_a_compensation_cut_off_by_a_crash_is_finished_by_the_next_supervisor(env):
    env.start("r1", "cancelling")
    assert env.once().returncode == 0
    pid = os.fork()
    if pid == 0:  # a process that dies (SIGKILL) just before calling on_cancel
        try:
            os.environ[faults.CRASH_AT_ENV] = "before_compensation:1"
            faults.reset()
            runner = Runner(env.home, clock=env.clock, machines_dir=env.dir)
            runner.deliver("r1", Message(run="r1", cancel=True, by="ops"), source_file="c1.json")
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    assert env.records("r1")[-1]["type"] == "compensation_started" and env.row("r1").status == "cancelled"
    assert env.once().returncode == 0
    assert [r["type"] for r in env.records("r1")][-3:] == [
        "compensation_started", "compensation_started", "compensation_finished"]
    assert [(e["state"], e["key"]) for e in env.ledger_lines() if e["state"] == "on_cancel"] == [
        ("on_cancel", "r1/cancel")]
