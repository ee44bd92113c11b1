"""The supervisor's parts on their own: wake-ups, the watcher, the worker pool, status rows, step timeouts."""

from __future__ import annotations

import os
from datetime import timedelta
from multiprocessing.connection import wait

import pytest

from engine.run.clock import FakeClock, iso
from engine.run.replay import RunState
from engine.supervise.jobs import Job
from engine.supervise.status import status_rows
from engine.supervise.timeouts import Overdue, StepTimeouts
from engine.supervise.watcher import Wakeup, Watcher
from engine.supervise.workers import WorkerPool
from journal import StepStarted, Waiting

from journal_builders import run_started
from waiting import wait_for


def test_wakeup_wakes_a_wait_and_clears():
    wake = Wakeup()
    try:
        assert wait([wake], 0) == []
        wake.set()
        wake.set()
        assert wait([wake], 1) == [wake]
        wake.clear()
        assert wait([wake], 0) == []
    finally:
        wake.close()


def test_watcher_hints_journal_changes_and_inbox_drops(home):
    wake = Wakeup()
    watcher = Watcher(home.inbox, home.store, wake)
    watcher.start()
    try:
        with open(home.runs / "r1.jsonl", "ab") as f:
            f.write(b"x\n")
        (home.inbox_tmp / "a.json").write_text("{}")
        os.rename(home.inbox_tmp / "a.json", home.inbox / "a.json")
        seen: set[str] = set()
        inbox_seen = False

        def both() -> bool:
            nonlocal inbox_seen
            runs, inbox = watcher.take()
            seen.update(runs)
            inbox_seen = inbox_seen or inbox
            return "r1" in seen and inbox_seen

        wait_for(both, timeout=10, what="hints for runs/r1.jsonl and the inbox")
        assert wait([wake], 0) == [wake]
    finally:
        watcher.stop()
        wake.close()


@pytest.mark.parametrize("which", [0, 1], ids=["inbox", "journals"])
def test_a_dead_watch_is_restarted(home, which):
    wake = Wakeup()
    watcher = Watcher(home.inbox, home.store, wake)
    watcher.start()
    try:
        watcher.watches[which].stop()  # as if its observer thread had died
        assert not watcher.alive()
        assert watcher.ensure_alive() is True
        assert watcher.alive() and watcher.ensure_alive() is False
    finally:
        watcher.stop()
        wake.close()


def test_pool_reports_errors_kills_and_replaces_dead_workers(home):
    pool = WorkerPool(2, home.root)
    pool.start()
    try:
        pids = {w.pid for w in pool.workers}
        pool.submit(Job("nobody"))
        results = wait_for(pool.collect, timeout=10, what="the unknown run's result")
        assert [(r.outcome, "nobody" in r.error) for r in results] == [("error", True)]

        worker = pool.submit(Job("nobody"))
        killed = pool.kill(worker, "hung")
        assert (killed.outcome, killed.job.run_id) == ("killed", "nobody")
        assert worker.pid not in {w.pid for w in pool.workers} and len(pool.workers) == 2

        victim = pool.workers[0]
        victim.job = Job("ghost")  # as if it held a run when it died
        victim.process.kill()
        victim.process.join(5)
        died = pool.collect()
        assert [(r.outcome, r.job.run_id) for r in died] == [("died", "ghost")]
        assert len(pool.idle()) == 2 and victim.pid not in {w.pid for w in pool.workers}
        assert pids != {w.pid for w in pool.workers}
    finally:
        pool.stop(1)
        pool.close()


def test_status_rows_show_waits_and_damage(home):
    with home.store.writer("r1", create=True) as w:
        w.append_many([
            run_started(definition={"initial": "review", "states": {"review": {}}}, definition_hash="sha256:x"),
            Waiting(state="review", triggers=["approve"], approvers=["alice"], deadline="2026-01-06T09:00:00Z"),
        ])
    (home.runs / "r2.jsonl").write_bytes(b"not json\n")
    rows = {r.run_id: r for r in status_rows(home)}
    r1 = rows["r1"]
    assert (r1.state, r1.status, r1.waiting_on, r1.approvers) == ("review", "waiting", ["approve"], ["alice"])
    assert r1.deadline.startswith("2026-01-06T09:00:00")
    assert rows["r2"].status == "damaged" and "r2.jsonl:1" in rows["r2"].error


def test_status_rows_show_a_journal_that_cannot_be_folded(home):
    with home.store.writer("r1", create=True) as w:
        w.append_many([
            run_started(definition={"initial": "a", "states": {"a": {}}}, definition_hash="sha256:x"),
            StepStarted(state="nowhere", attempt=1, idempotency_key="r1/nowhere/1"),
        ])
    (row,) = status_rows(home)
    assert row.status == "damaged" and "r1.jsonl" in row.error and "nowhere" in row.error


def test_only_the_step_killed_at_its_timeout_is_replayed_as_timed_out():
    timeouts = StepTimeouts(FakeClock())
    state = RunState(run_id="r1", status="running", last_seq=7)
    state.in_flight = StepStarted(state="a", attempt=1, idempotency_key="r1/a/1", seq=7)
    for killed_seq, expected in ((7, "timeout"), (4, "worker died"), (None, "worker died")):
        if killed_seq is not None:
            timeouts.killed("r1", Overdue("step 'a' attempt 1 exceeded its timeout of 30s", step_seq=killed_seq))
        job = timeouts.advance_job("r1", state)
        assert (job.kind, job.abandoned, job.last_seq) == ("advance", expected, 7)


def running_step(clock: FakeClock, *, seq: int, started_ago: float, timeout: float | None) -> RunState:
    """A run whose step (record `seq`) started `started_ago` seconds before the clock's now."""
    started = iso(clock.now() - timedelta(seconds=started_ago))
    state = RunState(run_id="r1", status="running", last_seq=seq, updated=started, step_timeout=timeout)
    state.in_flight = StepStarted(state="a", attempt=2, idempotency_key="r1/a/1", seq=seq, ts=started)
    return state


def test_a_step_is_overdue_a_timeout_after_its_start_its_hand_over_or_its_last_heartbeat():
    clock = FakeClock()
    timeouts = StepTimeouts(clock, job_timeout=300)
    job = Job("r1", last_seq=4)  # handed over before its step 5 started: the step is the job's
    timeouts.handed_over("r1")
    clock.advance(40)
    now = clock.now()
    assert timeouts.judge(job, running_step(clock, seq=5, started_ago=29, timeout=30), None, now) is None
    overdue = timeouts.judge(job, running_step(clock, seq=5, started_ago=31, timeout=30), None, now)
    assert overdue == Overdue("step 'a' attempt 2 exceeded its timeout of 30s", step_seq=5)
    state = running_step(clock, seq=5, started_ago=100, timeout=30)
    assert timeouts.judge(job, state, now - timedelta(seconds=10), now) is None  # it heartbeats: alive
    overdue = timeouts.judge(job, state, now - timedelta(seconds=35), now)
    assert overdue.step_seq == 5 and overdue.why.endswith("since its last heartbeat")
    assert timeouts.judge(job, running_step(clock, seq=5, started_ago=100, timeout=None), None, now) is None


def test_a_job_without_a_step_of_its_own_is_overdue_after_job_timeout_without_progress():
    clock = FakeClock()
    timeouts = StepTimeouts(clock, job_timeout=300)
    job = Job("r1", last_seq=5)  # step 5 was in flight before the hand-over: a replay, not the job's step
    state = running_step(clock, seq=5, started_ago=3600, timeout=30)
    timeouts.handed_over("r1")
    clock.advance(299)
    assert timeouts.judge(job, state, None, clock.now()) is None
    clock.advance(1)
    overdue = timeouts.judge(job, state, None, clock.now())
    assert overdue == Overdue("advance made no progress for 300s with no step of its own in flight")
    assert timeouts.judge(job, state, clock.now() - timedelta(seconds=1), clock.now()) is None  # a heartbeat
    timeouts.finished("r1")  # a job whose hand-over is not known counts as just handed over
    assert timeouts.judge(job, state, None, clock.now()) is None
    timeouts.killed("r1", overdue)  # not a step killed at its limit: replayed as "worker died"
    assert timeouts.advance_job("r1", state).abandoned == "worker died"


def test_heartbeats_are_rate_limited_and_dropped_rather_than_block():
    import multiprocessing
    import threading

    from engine.run.clock import FakeClock
    from engine.supervise.jobs import Heartbeat
    from engine.supervise.worker import Pulse

    ours, theirs = multiprocessing.Pipe(duplex=True)
    clock = FakeClock()
    pulse = Pulse(theirs, clock)
    pulse.beat()  # between jobs: nothing to say
    assert not ours.poll()
    pulse.run_id = "r1"
    first = clock.now()
    pulse.beat()
    clock.advance(0.5)
    pulse.beat()  # under a second after the last one: dropped
    clock.advance(0.5)
    pulse.beat()
    assert [ours.recv(), ours.recv()] == [Heartbeat("r1", first), Heartbeat("r1", clock.now())]
    assert not ours.poll()

    def flood():  # nobody reads: the pipe fills up, and beat() must still return at once
        for _ in range(100_000):
            clock.advance(1)
            pulse.beat()

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    flooder.join(20)
    assert not flooder.is_alive()
    sent = 0
    while ours.poll():
        assert ours.recv().run_id == "r1"
        sent += 1
    assert 0 < sent < 100_000
    ours.close()
    theirs.close()
