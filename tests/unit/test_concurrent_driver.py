"""The concurrent driver (engine.run.concurrent): many runs at once in one process, each lane
a thread with its own Runner on one shared home, and `Ratchet.run_here` on top of it.

Real journals in tmp_path, real threads; the actions make lanes meet inside their actions
(a barrier) where a test needs them to overlap, so nothing depends on timing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import lane_actions as acts
import pytest

from engine import Ratchet
from engine.errors import UnknownRunError
from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.concurrent import Driver, Launch, NotDrivenError, drive_many
from engine.run.replay import RunState, fold
from engine.run.runner import Runner
from engine.run.todo import Enter
from journal import StepStarted
from journal.errors import JournalLockedError

LANES = """
name: lanes
version: 1
initial: first
states:
  first: {action: lane_actions:work}
  second: {action: lane_actions:work, idempotent: false}
  third: {action: lane_actions:work}
  review: {approvers: [alice], timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: ok, source: first, dest: second}
  - {trigger: ok, source: second, dest: third}
  - {trigger: ok, source: third, dest: review}
  - {trigger: approve, source: review, dest: done}
"""
START = "2026-11-27T09:00:00Z"


@pytest.fixture(autouse=True)
def _reset_lane_actions():
    acts.reset()
    yield
    acts.reset()


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    path = tmp_path / "lanes.yaml"
    path.write_text(LANES)
    return path


def jobs_for(machine: Path, n: int) -> list[Launch]:
    """n launches; every fifth run's second step is refused (it escalates)."""
    return [Launch(machine, {"n": i, **({"fail_in": "second"} if i % 5 == 3 else {})}, run_id=f"r{i:02d}")
            for i in range(n)]


def test_runs_driven_by_eight_lanes_end_as_driven_one_by_one(tmp_path, machine):
    jobs = jobs_for(machine, 24)
    laned, alone = Home(tmp_path / "laned").ensure(), Home(tmp_path / "alone").ensure()
    clock_laned, clock_alone = FakeClock(START), FakeClock(START)
    driver = Driver(laned, threads=8, clock=clock_laned)
    runner = Runner(alone, clock=clock_alone)

    outcomes = driver.drive(jobs)
    one_by_one = [runner.launch(job.machine, job.input, run_id=job.run_id) for job in jobs]
    assert [(o.run_id, o.status) for o in outcomes] == [(rs.run_id, rs.status) for rs in one_by_one]
    assert {o.status for o in outcomes} == {"waiting", "escalated"}
    threads = {name for *_, name in acts.CALLS if name.startswith("ratchet-lane-")}
    assert len(threads) > 1  # the lanes, not one thread, drove them

    # Advancing existing runs (ids as jobs): their review waits expire (no timeout transition).
    clock_laned.advance(2 * 86400)
    clock_alone.advance(2 * 86400)
    waiting = [o.run_id for o in outcomes if isinstance(o, RunState) and o.status == "waiting"]
    again = driver.drive(waiting)
    assert [o.status for o in again] == ["escalated"] * len(waiting)
    for run_id in waiting:
        runner.advance(run_id)

    for job in jobs:
        assert acts.story(laned, job.run_id) == acts.story(alone, job.run_id), job.run_id
        assert laned.store.verify(job.run_id).ok
    # Each step ran once per run, with the run's own key, whichever lane ran it.
    keys = [key for _, _, key, _ in acts.CALLS]
    assert set(Counter(keys).values()) == {2}  # each key once per home: the laned one and the one-by-one one


def test_actions_of_different_runs_run_at_the_same_time(tmp_path, machine):
    """Eight first steps meet at a barrier inside their actions: only eight lanes at once get there."""
    meeting = threading.Barrier(8, timeout=20)
    acts.MEET = lambda run_id: meeting.wait()
    outcomes = drive_many(Home(tmp_path / "h").ensure(), jobs_for(machine, 8), threads=8, clock=FakeClock(START))
    assert [o.status for o in outcomes if isinstance(o, RunState)] == [
        "escalated" if i % 5 == 3 else "waiting" for i in range(8)]
    assert not meeting.broken


def test_a_failing_run_fails_alone(tmp_path, machine):
    """A refused step escalates its run; a crash escaping the runner, or an unknown id, is
    returned in that job's slot with its traceback; every other run goes on to its rest."""
    home = Home(tmp_path / "h").ensure()
    jobs: list[Launch | str] = [Launch(machine, {"n": i}, run_id=f"r{i}") for i in range(6)]
    jobs[1] = Launch(machine, {"n": 1, "fail_in": "first"}, run_id="r1")
    jobs[2] = Launch(machine, {"n": 2, "die_in": "third"}, run_id="r2")
    jobs.append("no-such-run")
    outcomes = drive_many(home, jobs, threads=3, clock=FakeClock(START))

    assert isinstance(outcomes[1], RunState)
    assert (outcomes[1].status, outcomes[1].escalation.reason) == ("escalated", "retries exhausted")
    assert isinstance(outcomes[2], acts.Crash)
    assert outcomes[2].__traceback__ is not None  # where it raised is kept
    assert fold(home.store.read("r2").records).in_flight is not None  # as a crash leaves it
    assert isinstance(outcomes[6], UnknownRunError)
    assert [o.status for i, o in enumerate(outcomes) if i in (0, 3, 4, 5)] == ["waiting"] * 4


def test_jobs_naming_one_run_go_one_after_another_in_one_lane(tmp_path, machine):
    """r1's first action waits until r2's has run: had the driver handed r1's second job to
    the free lane meanwhile, that job would have found r1 locked (JournalLockedError)."""
    home = Home(tmp_path / "h").ensure()
    r2_ran = threading.Event()

    def meet(run_id: str) -> None:
        if run_id == "r2":
            r2_ran.set()
        elif not r2_ran.wait(20):
            raise AssertionError("r2 never ran beside r1")

    acts.MEET = meet
    jobs = [Launch(machine, {"n": 1}, run_id="r1"), "r1", Launch(machine, {"n": 2}, run_id="r2")]
    outcomes = drive_many(home, jobs, threads=2, clock=FakeClock(START))
    assert not any(isinstance(o, JournalLockedError) for o in outcomes), outcomes
    assert [o.status for o in outcomes if isinstance(o, RunState)] == ["waiting", "waiting", "waiting"]


def test_drain_finishes_the_steps_in_hand_and_starts_none(tmp_path, machine):
    """Four lanes each hold a first step when the drain comes (from inside an action, as a
    signal lands while actions run): those four finish and are journaled up to their
    transition, no other `step_started` is journaled, and the jobs not begun say so."""
    home = Home(tmp_path / "h").ensure()
    driver = Driver(home, threads=4, clock=FakeClock(START))
    meeting = threading.Barrier(4, timeout=20, action=driver.drain)  # the last to arrive drains
    acts.MEET = lambda run_id: meeting.wait()
    jobs: list[Launch | str] = [*jobs_for(machine, 12), "r00", "r01", "r02", "r03"]  # second jobs of begun runs
    outcomes = driver.drive(jobs)

    assert all(isinstance(o, NotDrivenError) for o in outcomes[12:])  # a lane begins no job after the drain
    begun = [o for o in outcomes if isinstance(o, RunState)]
    assert len(begun) == 4
    for rs in begun:
        assert (rs.status, rs.state, rs.in_flight, rs.todo) == ("running", "second", None, Enter())
    assert all(isinstance(o, NotDrivenError) for o in outcomes if not isinstance(o, RunState))
    started = [r for run_id in home.store.run_ids() for r in home.store.read(run_id).records
               if isinstance(r, StepStarted)]
    assert len(started) == 4
    assert not any(home.store.held(run_id) for run_id in home.store.run_ids())
    # A later drive goes on from the state's entry.
    rs = Driver(home, threads=2, clock=FakeClock(START)).drive([begun[0].run_id])[0]
    assert isinstance(rs, RunState) and rs.status in ("waiting", "escalated")


def test_run_here_drives_launches_and_ids_and_returns_snapshots(tmp_path, machine):
    ratchet = Ratchet(home=tmp_path / "h", clock=FakeClock(START))
    made = ratchet.start(machine, {"n": 7}, id="made")
    results = ratchet.run_here([Launch(machine, {"n": 1}, run_id="new"), made, "missing"], threads=4)
    assert [(r.id, r.status, r.state) for r in results[:2]] == [("new", "waiting", "review"),
                                                               ("made", "waiting", "review")]
    assert results[1].data == {"first": 7, "second": 7, "third": 7}
    assert isinstance(results[2], UnknownRunError)
    assert ratchet.get("new").status == "waiting"
    assert ratchet.history("new")[0].by  # a launch's starter defaults as start's does


def test_a_driver_needs_a_lane(tmp_path):
    with pytest.raises(ValueError, match="at least one lane"):
        Driver(Home(tmp_path / "h"), threads=0)


def test_an_interrupt_of_the_waiting_thread_drains_the_lanes_before_it_propagates(tmp_path, machine):
    """Ctrl-C lands in the thread that waits on the lanes (here: a KeyboardInterrupt raised in
    it from an action): the lanes finish their steps in hand and start no other before the
    interrupt goes on, so no lane is left running inside a dying interpreter."""
    import ctypes

    home = Home(tmp_path / "h").ensure()
    driver = Driver(home, threads=2, clock=FakeClock(START))
    waiter = threading.get_ident()
    meeting = threading.Barrier(2, timeout=20)

    def meet(run_id: str) -> None:
        if meeting.wait() == 0:  # both lanes are inside an action: interrupt the waiting thread
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(waiter), ctypes.py_object(KeyboardInterrupt))
        for _ in range(2000):  # hold the step until the interrupt has drained the driver
            if driver.drained:
                return
            time.sleep(0.01)

    acts.MEET = meet
    with pytest.raises(KeyboardInterrupt):
        driver.drive(jobs_for(machine, 8))
    assert driver.drained
    started = [r for run_id in home.store.run_ids() for r in home.store.read(run_id).records
               if isinstance(r, StepStarted)]
    assert len(started) == 2  # the two steps in hand, no other
    assert not [r for r in home.store.run_ids() if fold(home.store.read(r).records).in_flight]  # all journaled


def test_run_here_gives_the_signals_back_as_they_were(tmp_path, machine):
    """SIGINT and SIGTERM drain the lanes only while `run_here` drives: the caller's handlers
    are back afterwards."""
    import signal

    def mine(signum, frame):
        raise AssertionError("not called")

    interrupt = signal.getsignal(signal.SIGINT)
    before = signal.signal(signal.SIGTERM, mine)
    try:
        Ratchet(home=tmp_path / "h", clock=FakeClock(START)).run_here([Launch(machine, {"n": 1}, run_id="a")])
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is interrupt
    finally:
        signal.signal(signal.SIGTERM, before)
