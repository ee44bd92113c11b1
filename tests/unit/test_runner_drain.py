"""`Runner.drain()`, the graceful stop: the step in hand finishes and its outcome and
transition are journaled, but no next `step_started`; a later start begins that step.

The drain is asked from `on_record` right after a `step_started` is durable, as a SIGTERM
to a worker (or Ctrl-C of `ratchet run`) lands while the action runs.
"""

from __future__ import annotations

import pytest

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.runner import Runner
from engine.run.todo import Enter
from engine.supervise.message import Message
from journal import StepStarted
from journal.records import record_type

import runner_test_actions as acts
from journal_builders import story


def draining_at_step_start(home: Home) -> Runner:
    """A runner that is asked to drain as soon as a step has started."""
    runner = Runner(home, clock=FakeClock("2026-11-27T09:41:00Z"))
    runner.on_record = lambda record: runner.drain() if isinstance(record, StepStarted) else None
    return runner


def types(home: Home, run_id: str) -> list[str]:
    return [record_type(r) for r in story(home.store.read(run_id).records)]


def test_the_step_in_hand_finishes_and_the_batch_ends_at_its_transition(home, shop_machine):
    rs = draining_at_step_start(home).launch(shop_machine, {}, run_id="r1")
    assert types(home, "r1") == ["run_started", "step_started", "step_succeeded", "transition"]
    assert acts.CALLS == [("reserve", 1, "r1/reserve/1")]
    assert (rs.status, rs.state, rs.in_flight, rs.todo) == ("running", "charge", None, Enter())
    # A later start (a fresh runner: a restarted supervisor) begins the step it did not start.
    rs = Runner(home, clock=FakeClock("2026-11-27T09:42:00Z")).advance("r1")
    assert (rs.status, rs.state) == ("waiting", "review")
    assert acts.CALLS[1:] == [("charge", 1, "r1/charge/1")]
    assert "escalated" not in types(home, "r1")


def test_a_failed_step_schedules_its_retry_and_starts_nothing(home, shop_machine):
    acts.SCRIPT["reserve"] = [acts.Flaky("503")]
    rs = draining_at_step_start(home).launch(shop_machine, {}, run_id="r1")
    assert types(home, "r1")[-2:] == ["step_failed", "retry_scheduled"]
    assert (rs.status, rs.retry_attempt) == ("retrying", 2)


def test_a_delivery_while_draining_journals_the_trigger_and_transition_but_no_step(home, shop_machine):
    acts.SCRIPT["charge"] = [None]
    runner = Runner(home, clock=FakeClock("2026-11-27T09:41:00Z"))
    assert runner.launch(shop_machine, {}, run_id="r1").status == "waiting"
    runner.drain()
    answer = runner.deliver("r1", Message(run="r1", trigger="approve", by="alice"), source_file="f1.json")
    assert answer.accepted
    assert types(home, "r1")[-2:] == ["trigger_received", "transition"]
    assert (answer.state.status, answer.state.state, answer.state.in_flight) == ("running", "reserve", None)
    assert len(acts.CALLS) == 2  # reserve and charge before the drain; nothing after it


def test_draining_skips_a_restart_of_an_idempotent_step_but_escalates_a_non_idempotent_one(home, shop_machine):
    acts.SCRIPT["reserve"] = [acts.Die()]
    runner = Runner(home, clock=FakeClock("2026-11-27T09:41:00Z"))
    with pytest.raises(acts.Die):  # the process "died" mid-step: reserve is in flight
        runner.launch(shop_machine, {}, run_id="r1")
    drained = Runner(home, clock=FakeClock("2026-11-27T09:41:00Z"))
    drained.drain()
    before = types(home, "r1")
    assert drained.advance("r1").in_flight is not None
    assert types(home, "r1") == before  # no step_abandoned + step_started while draining

    acts.SCRIPT["charge"] = [acts.Die()]
    with pytest.raises(acts.Die):
        Runner(home, clock=FakeClock("2026-11-27T09:41:00Z")).advance("r1")
    rs = drained.advance("r1")  # an escalation is a fact about the past, not a new step
    assert (rs.status, rs.escalation.reason) == ("escalated", "unknown outcome")


def test_a_launch_while_draining_creates_the_run_and_starts_no_step(home, shop_machine):
    runner = Runner(home, clock=FakeClock("2026-11-27T09:41:00Z"))
    runner.drain()
    rs = runner.launch(shop_machine, {}, run_id="r1")
    assert types(home, "r1") == ["run_started"]
    assert (rs.status, rs.state, rs.todo) == ("running", "reserve", Enter())
    assert acts.CALLS == []
