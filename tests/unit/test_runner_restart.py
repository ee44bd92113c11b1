"""A new Runner over the same home — a restarted process, nothing cached — keeps the run's
promises: what the journal says about time (a retry's due date) holds across the restart."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.home import Home
from engine.run.clock import FakeClock, iso
from engine.run.runner import Runner
from journal import RetryScheduled, StepStarted

import runner_test_actions as acts

MACHINE = """
name: flaky
version: 1
initial: draft
states:
  draft:
    action: runner_test_actions:step
    retry: {attempts: 3, backoff: 10s, factor: 2, jitter: false}
  review: {approvers: [alice]}
  done: {final: true}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: approve, source: review, dest: done}
"""


def test_a_fresh_runner_does_not_run_the_next_attempt_before_its_due_time(tmp_path: Path):
    machine = tmp_path / "flaky.yaml"
    machine.write_text(MACHINE)
    home = Home(tmp_path / "home").ensure()
    clock = FakeClock("2026-03-02T09:00:00Z")
    acts.SCRIPT["draft"] = [acts.Flaky("503")]
    rs = Runner(home, clock=clock).launch(machine, run_id="r1")
    assert rs.status == "retrying" and acts.CALLS == [("draft", 1, "r1/draft/1")]
    due = clock.now() + timedelta(seconds=10)
    assert rs.deadline == due
    journal = home.store.path("r1")
    written = journal.read_bytes()

    for at in (clock.now(), due - timedelta(microseconds=1)):  # at the failure's time, then just before due
        clock.advance((at - clock.now()).total_seconds())
        rs = Runner(home, clock=clock).advance("r1")  # a new process: it knows only the journal
        assert (rs.status, rs.deadline, rs.attempt) == ("retrying", due, 1), iso(at)
        assert len(acts.CALLS) == 1, f"attempt 2 ran at {iso(at)}, before its due time {iso(due)}"
        assert journal.read_bytes() == written  # nothing rescheduled: the due time was durable already

    clock.advance((due - clock.now()).total_seconds())
    rs = Runner(home, clock=clock).advance("r1")
    assert (rs.status, rs.state) == ("waiting", "review")
    assert acts.CALLS == [("draft", 1, "r1/draft/1"), ("draft", 2, "r1/draft/1")]
    records = home.store.read("r1").records
    [retry] = [r for r in records if isinstance(r, RetryScheduled)]
    [second] = [r for r in records if isinstance(r, StepStarted) and r.attempt == 2]
    assert retry.due == second.ts == iso(due)


def test_a_fresh_foreground_run_sleeps_until_the_due_time_then_runs_the_next_attempt(tmp_path: Path):
    machine = tmp_path / "flaky.yaml"
    machine.write_text(MACHINE)
    home = Home(tmp_path / "home").ensure()
    clock = FakeClock("2026-03-02T09:00:00Z")
    acts.SCRIPT["draft"] = [acts.Flaky("503"), acts.Flaky("503")]
    Runner(home, clock=clock).launch(machine, run_id="r1")
    clock.advance(4)  # restarted 4 s into the 10 s back-off
    rs = Runner(home, clock=clock).run("r1")  # `ratchet run` sleeps (on the clock) through both waits
    assert rs.state == "review" and [a for _, a, _ in acts.CALLS] == [1, 2, 3]
    started = [r.ts for r in home.store.read("r1").records if isinstance(r, StepStarted)]
    assert started == ["2026-03-02T09:00:00.000000Z", "2026-03-02T09:00:10.000000Z", "2026-03-02T09:00:30.000000Z"]
