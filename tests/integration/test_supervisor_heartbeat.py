"""`ctx.heartbeat()` under a real `ratchet supervise`: a step's timeout counts from the
attempt's start or its last heartbeat, whichever is later."""

from __future__ import annotations

from pathlib import Path

from supervisor_harness import Env, pid_alive
from waiting import wait_for


def beat(pulse: Path, i: int) -> None:
    """Let the action's i-th heartbeat go, and wait until it was sent."""
    Path(f"{pulse}.go{i}").touch()
    wait_for(Path(f"{pulse}.beat{i}").exists, what=f"heartbeat {i}")


def round_trip(env: Env, probe: str) -> None:
    """Run a probe to its wait on the other worker: the supervisor has gone round its loop
    (and judged the busy worker's timeout) at the file clock's present time."""
    env.start(probe)
    env.wait_status(probe, "waiting", "review")


def test_a_step_that_keeps_heartbeating_outlives_its_timeout(env):
    pulse = env.dir / "pulse"
    env.start("r1", pulse=str(pulse), pulses=6)
    env.supervise()
    marker = env.started_marker("r1")
    wait_for(marker.exists, what="the step to start")
    worker = int(marker.read_text())
    for i in range(1, 7):
        env.clock.advance(1.5)  # 9s in all, far past prepare's 2s; never 2s without a beat
        beat(pulse, i)
        round_trip(env, f"probe{i}")
        assert pid_alive(worker)
    env.wait_status("r1", "waiting", "review")
    assert pid_alive(worker)
    assert not {"step_failed", "step_abandoned"} & {r["type"] for r in env.records("r1")}
    assert [(e["state"], e["attempt"]) for e in env.ledger_lines() if e["run"] == "r1"] == [("prepare", 1)]
    assert "killing worker" not in env.log()


def test_a_step_that_goes_silent_is_killed_a_timeout_after_its_last_heartbeat(env):
    pulse = env.dir / "pulse"
    env.start("r1", pulse=str(pulse), pulses=1, pulse_hang=True)
    env.supervise()
    marker = env.started_marker("r1")
    wait_for(marker.exists, what="the step to start")
    worker = int(marker.read_text())
    env.clock.advance(1.5)
    beat(pulse, 1)  # the only heartbeat, 1.5s after the start; then the action hangs
    env.clock.advance(1)  # 2.5s after the start (past the 2s timeout), 1s after the beat
    round_trip(env, "probe")
    assert pid_alive(worker) and env.row("r1").status == "running"
    env.clock.advance(1.5)  # 2.5s after the beat
    wait_for(lambda: not pid_alive(worker), what="the silent worker to be killed")
    wait_for(lambda: env.row("r1").status == "retrying", what="a retry to be scheduled")
    env.clock.advance(2)  # past the 1s back-off
    env.wait_status("r1", "waiting", "review")
    failed = [r for r in env.records("r1") if r["type"] == "step_failed"]
    assert [(r["attempt"], "exceeded its timeout" in r["error"]) for r in failed] == [(1, True)]
    assert [(e["state"], e["attempt"]) for e in env.ledger_lines() if e["run"] == "r1"] == [
        ("prepare", 1), ("prepare", 2)]
    assert "exceeded its timeout of 2s since its last heartbeat" in env.log()
