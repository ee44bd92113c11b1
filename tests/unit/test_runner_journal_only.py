"""`Runner.deliver(..., journal_only=True)`, the mail lane's delivery: the message and what
follows without calling code are journaled; the move that would call code (a step, an
on_escalate) is left owed, for an ordinary `advance`."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.runner import Runner
from engine.supervise.message import Message
from journal.records import record_type

import runner_test_actions as acts

MACHINE = """
name: shop
version: 1
initial: reserve
states:
  reserve:
    action: runner_test_actions:step
    retry: {attempts: 2, backoff: 1m}
  charge: {action: runner_test_actions:step, idempotent: false}
  review: {approvers: [alice], timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: ok, source: reserve, dest: charge}
  - {trigger: ok, source: charge, dest: review}
  - {trigger: approve, source: review, dest: reserve}
  - {trigger: finish, source: review, dest: done}
"""


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(MACHINE)
    return path


def types(home: Home, run_id: str) -> list[str]:
    """The journal's record types, seals left out (a run at rest is sealed: journal.seal)."""
    return [record_type(r) for r in home.store.read(run_id).records if record_type(r) != "sealed"]


def waiting_run(home: Home, machine: Path, clock: FakeClock) -> Runner:
    runner = Runner(home, clock=clock)
    assert runner.launch(machine, {}, run_id="r1").status == "waiting"
    return runner


def test_an_accepted_trigger_is_journaled_with_its_transition_and_the_step_is_left_owed(home, machine):
    runner = waiting_run(home, machine, FakeClock("2026-11-27T09:41:00Z"))
    calls = len(acts.CALLS)
    answer = runner.deliver("r1", Message(run="r1", trigger="approve", by="alice"), source_file="f1.json",
                            journal_only=True)
    assert answer.accepted
    assert types(home, "r1")[-2:] == ["trigger_received", "transition"]
    assert (answer.state.status, answer.state.state, answer.state.in_flight) == ("running", "reserve", None)
    assert len(acts.CALLS) == calls  # no code ran
    rs = Runner(home, clock=FakeClock("2026-11-27T09:42:00Z")).advance("r1")  # the pool's advance
    assert (rs.status, rs.state) == ("waiting", "review")
    assert [c[0] for c in acts.CALLS[calls:]] == ["reserve", "charge"]
    again = runner.deliver("r1", Message(run="r1", trigger="approve", by="alice"), source_file="f1.json",
                           journal_only=True)
    assert again.accepted and types(home, "r1").count("trigger_received") == 1  # idempotent on the file


def test_a_trigger_to_a_final_state_ends_the_run_and_a_refusal_is_journaled(home, machine):
    runner = waiting_run(home, machine, FakeClock("2026-11-27T09:41:00Z"))
    refused = runner.deliver("r1", Message(run="r1", trigger="finish", by="mallory"), journal_only=True)
    assert not refused.accepted and types(home, "r1")[-1] == "trigger_refused"
    done = runner.deliver("r1", Message(run="r1", trigger="finish", by="alice"), journal_only=True)
    assert done.accepted and done.state.status == "finished"
    assert types(home, "r1")[-3:] == ["trigger_received", "transition", "run_finished"]


def test_a_passed_deadline_wins_and_its_escalation_is_left_to_an_advance(home, machine):
    clock = FakeClock("2026-11-27T09:41:00Z")
    runner = waiting_run(home, machine, clock)
    clock.advance(2 * 86400)
    answer = runner.deliver("r1", Message(run="r1", trigger="approve", by="alice"), journal_only=True)
    assert not answer.accepted
    assert types(home, "r1")[-2:] == ["timeout_fired", "trigger_refused"]
    assert not (home.root / "escalations" / "r1.json").exists()  # on_escalate is code: not here
    rs = runner.advance("r1")
    assert (rs.status, rs.escalation.reason) == ("escalated", "timeout")
