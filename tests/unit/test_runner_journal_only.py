"""`Runner.deliver(..., journal_only=True)`, the mail lane's delivery: the message and what
follows without calling code are journaled; the move that would call code (a step, an
on_escalate) is left owed, for an ordinary `advance`."""

from __future__ import annotations

from pathlib import Path

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.runner import Runner
from engine.supervise.message import Message
from journal.records import record_type

import runner_test_actions as acts


def types(home: Home, run_id: str) -> list[str]:
    """The journal's record types, seals left out (a run at rest is sealed: journal.seal)."""
    return [record_type(r) for r in home.store.read(run_id).records if record_type(r) != "sealed"]


def waiting_run(home: Home, machine: Path, clock: FakeClock) -> Runner:
    runner = Runner(home, clock=clock)
    assert runner.launch(machine, {}, run_id="r1").status == "waiting"
    return runner


def test_an_accepted_trigger_is_journaled_with_its_transition_and_the_step_is_left_owed(home, shop_machine):
    runner = waiting_run(home, shop_machine, FakeClock("2026-11-27T09:41:00Z"))
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


def test_a_trigger_to_a_final_state_ends_the_run_and_a_refusal_is_journaled(home, shop_machine):
    runner = waiting_run(home, shop_machine, FakeClock("2026-11-27T09:41:00Z"))
    refused = runner.deliver("r1", Message(run="r1", trigger="finish", by="mallory"), journal_only=True)
    assert not refused.accepted and types(home, "r1")[-1] == "trigger_refused"
    done = runner.deliver("r1", Message(run="r1", trigger="finish", by="alice"), journal_only=True)
    assert done.accepted and done.state.status == "finished"
    assert types(home, "r1")[-3:] == ["trigger_received", "transition", "run_finished"]


def test_a_passed_deadline_wins_and_its_escalation_is_left_to_an_advance(home, shop_machine):
    clock = FakeClock("2026-11-27T09:41:00Z")
    runner = waiting_run(home, shop_machine, clock)
    clock.advance(2 * 86400)
    answer = runner.deliver("r1", Message(run="r1", trigger="approve", by="alice"), journal_only=True)
    assert not answer.accepted
    assert types(home, "r1")[-2:] == ["timeout_fired", "trigger_refused"]
    assert not (home.root / "escalations" / "r1.json").exists()  # on_escalate is code: not here
    rs = runner.advance("r1")
    assert (rs.status, rs.escalation.reason) == ("escalated", "timeout")


FAN = """
name: fan_after_review
version: 1
initial: review
states:
  review: {approvers: [alice], timeout: 1d}
  fan:
    spawn: {machine: fan_child, for_each: items}
    timeout: 1d
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: fan}
  - {trigger: joined, source: fan, dest: done}
  - {trigger: failed, source: fan, dest: done}
"""

FAN_CHILD = """
name: fan_child
version: 1
initial: work
states:
  work: {timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: finish, source: work, dest: done}
"""


def test_a_trigger_into_a_spawning_state_leaves_the_spawn_owed(home, tmp_path: Path):
    """Spawning loads the child machine (its modules are imported) and creates a journal
    per child: work for the pool, not for the mail lane, which must stay a few appends."""
    (tmp_path / "fan_child.yaml").write_text(FAN_CHILD)
    (tmp_path / "fan_after_review.yaml").write_text(FAN)
    runner = Runner(home, clock=FakeClock("2026-11-27T09:41:00Z"))
    assert runner.launch(tmp_path / "fan_after_review.yaml", {"items": list(range(50))}, run_id="p").status == "waiting"
    answer = runner.deliver("p", Message(run="p", trigger="approve", by="alice"), journal_only=True)
    assert answer.accepted
    assert types(home, "p")[-2:] == ["trigger_received", "transition"]
    assert home.store.run_ids() == ["p"]  # no child created on the lane
    assert runner.read("p").status == "running"  # owed: the supervisor hands it to its pool
    assert runner.advance("p").status == "waiting"  # the pool's advance spawns
    assert "spawned" in types(home, "p") and len(home.store.run_ids()) == 51


def test_a_retry_of_a_spawn_that_failed_leaves_the_children_to_the_pool(home, tmp_path: Path):
    """Resolving a failed spawn with `retry` on the lane creates no child (nor escalates
    again, calling on_escalate): the advance that follows does."""
    (tmp_path / "fan_after_review.yaml").write_text(FAN)
    (tmp_path / "fan_child.yaml").write_text(FAN_CHILD)
    runner = Runner(home, clock=FakeClock("2026-11-27T09:41:00Z"))
    runner.launch(tmp_path / "fan_after_review.yaml", {"items": [1, 2]}, run_id="p")
    (tmp_path / "fan_child.yaml").unlink()  # gone when the spawn comes: creating the children fails
    runner.deliver("p", Message(run="p", trigger="approve", by="alice"))
    assert runner.read("p").status == "escalated" and home.store.run_ids() == ["p"]
    (tmp_path / "fan_child.yaml").write_text(FAN_CHILD)
    answer = runner.deliver("p", Message(run="p", resolve="retry", by="carol"), journal_only=True)
    assert answer.accepted
    assert types(home, "p")[-1] == "resolved" and home.store.run_ids() == ["p"]
    assert runner.read("p").status == "running"  # owed: the supervisor hands it to its pool
    assert runner.advance("p").status == "waiting"
    assert sorted(home.store.run_ids()) == ["p", "p.fan.0", "p.fan.1"]
