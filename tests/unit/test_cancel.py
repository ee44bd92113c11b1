"""Cancel: any run that has not ended, whatever it does; `on_cancel` runs once after it.

The runner's side, on a fake clock: each run status, a step cut off in flight, the
refusal of an ended run, the compensation (once, its key, a crash between its records,
a failure), and the message format. The supervisor's side (killing the worker that holds
a run) is tests/integration/test_supervisor_cancel.py; kill -9 at every crash point
around the compensation is tests/faults/test_cancel_kill.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from engine.definition.loader import load_file
from engine.errors import DefinitionError, InvalidMessageError
from engine.run.clock import FakeClock
from engine.run.replay import fold
from engine.run.runner import Runner
from engine.supervise.message import Message, message_name, parse_message
from journal import Cancelled, CompensationFinished, CompensationStarted, TriggerRefused
from journal.records import record_type

import runner_test_actions as acts
from journal_builders import story

MACHINE = """
name: holds
version: 1
initial: draft
on_escalate: runner_test_actions:notify
on_cancel: runner_test_actions:release_hold
states:
  draft:
    action: runner_test_actions:step
    retry: {attempts: 3, backoff: 2s, factor: 2, max_backoff: 1m, jitter: false}
    non_retryable: [Fatal]
  review: {approvers: [alice], timeout: 2d}
  send: {action: runner_test_actions:step, idempotent: false}
  done: {final: true}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: approve, source: review, dest: send}
  - {trigger: ok, source: send, dest: done}
"""


@pytest.fixture
def clock():
    return FakeClock("2026-11-27T09:00:00Z")


def machine(tmp_path: Path, text: str = MACHINE, name: str = "holds.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cancel(run_id: str, by: str = "ops", reason: str | None = "customer left") -> Message:
    return Message(run=run_id, cancel=True, by=by, reason=reason)


def types(runner: Runner, run_id: str) -> list[str]:
    return [record_type(r) for r in story(runner.home.store.read(run_id).records)]


def last(runner: Runner, run_id: str, n: int) -> list:
    return story(runner.home.store.read(run_id).records)[-n:]


def waiting_run(runner: Runner, tmp_path: Path, text: str = MACHINE) -> str:
    rs = runner.launch(machine(tmp_path, text), {"customer": "acme"}, run_id="r1")
    assert (rs.status, rs.state) == ("waiting", "review")
    return "r1"


# --- each run status ----------------------------------------------------------------------


def test_a_waiting_run_is_cancelled_then_compensated_once(runner, tmp_path, clock):
    rid = waiting_run(runner, tmp_path)
    d = runner.deliver(rid, cancel(rid), source_file="c1.json")
    assert (d.accepted, d.state.status, d.state.state) == (True, "cancelled", "review")
    cancelled, started, finished = last(runner, rid, 3)
    assert isinstance(cancelled, Cancelled)
    assert (cancelled.by, cancelled.reason, cancelled.source_file, cancelled.cut_step) == (
        "ops", "customer left", "c1.json", None)
    assert isinstance(started, CompensationStarted) and isinstance(finished, CompensationFinished)
    assert (started.action, started.attempt, started.idempotency_key) == ("runner_test_actions:release_hold", 1,
                                                                          "r1/cancel")
    assert finished.error is None
    assert acts.COMPENSATED == [("r1/cancel", "review", 1)]
    # Ended: its deadline never fires, nothing runs again, the same file gets its first answer.
    clock.advance(3 * 86400)
    assert runner.advance(rid).status == "cancelled"
    assert runner.deliver(rid, cancel(rid), source_file="c1.json").accepted
    assert acts.COMPENSATED == [("r1/cancel", "review", 1)] and acts.CALLS == [("draft", 1, "r1/draft/1")]
    assert types(runner, rid)[-4:] == ["waiting", "cancelled", "compensation_started", "compensation_finished"]


def test_a_run_sleeping_before_a_retry_is_cancelled_and_the_retry_never_runs(runner, tmp_path, clock):
    acts.SCRIPT["draft"] = [acts.Flaky("503")]
    rs = runner.launch(machine(tmp_path), {}, run_id="r1")
    assert rs.status == "retrying" and rs.retry_attempt == 2
    d = runner.deliver("r1", cancel("r1"), source_file="c1.json")
    assert d.accepted and d.state.status == "cancelled" and d.state.deadline is None
    clock.advance(3600)
    assert runner.advance("r1").status == "cancelled"
    assert acts.CALLS == [("draft", 1, "r1/draft/1")]  # attempt 2 never started
    assert "step_started" not in types(runner, "r1")[-3:]


def test_an_escalated_run_is_cancelled_and_its_ticket_removed(runner, tmp_path, home):
    acts.SCRIPT["draft"] = [acts.Fatal("bad input")]
    rs = runner.launch(machine(tmp_path), {}, run_id="r1")
    assert rs.status == "escalated"
    ticket = home.escalations / "r1.json"
    assert ticket.exists()
    d = runner.deliver("r1", cancel("r1"), source_file="c1.json")
    assert d.accepted and d.state.status == "cancelled" and d.state.escalation is None
    assert not ticket.exists()
    assert acts.COMPENSATED == [("r1/cancel", "draft", 1)]


@pytest.mark.parametrize("state, idempotent", [("draft", True), ("send", False)])
def test_a_step_cut_off_in_flight_is_named_and_never_run_again(runner, tmp_path, home, clock, state, idempotent):
    path = machine(tmp_path)
    acts.SCRIPT[state] = [acts.Die()]  # the worker killed mid-step: no outcome journaled
    with pytest.raises(acts.Die):
        rs = runner.launch(path, {}, run_id="r1")
        runner.deliver("r1", Message(run="r1", trigger="approve", by="alice"))
    restarted = Runner(home, clock=clock)
    assert restarted.read("r1").in_flight is not None
    calls = len(acts.CALLS)
    d = restarted.deliver("r1", cancel("r1"), source_file="c1.json")
    assert d.accepted and d.state.status == "cancelled" and d.state.in_flight is None
    cancelled = last(restarted, "r1", 3)[0]
    cut = cancelled.cut_step
    assert (cut.state, cut.attempt, cut.idempotency_key, cut.outcome_unknown) == (
        state, 1, f"r1/{state}/1", not idempotent)
    line = [x for x in restarted.home.store.path("r1").read_text().splitlines() if '"sealed"' not in x][-3]
    assert ('"outcome_unknown":true' in line) == (not idempotent)
    restarted.advance("r1")
    assert len(acts.CALLS) == calls  # cut off means never called again
    rs = fold(restarted.home.store.read("r1").records)
    assert rs.status == "cancelled" and rs.escalation is None


def test_a_cancel_is_never_stale(runner, tmp_path):
    rid = waiting_run(runner, tmp_path)
    d = runner.deliver(rid, cancel(rid), source_file="c1.json", answers=2)  # an older wait
    assert d.accepted and d.state.status == "cancelled"


def test_a_cancel_of_an_ended_run_is_refused_and_journaled(runner, tmp_path):
    rid = waiting_run(runner, tmp_path)
    runner.deliver(rid, cancel(rid), source_file="c1.json")
    d = runner.deliver(rid, cancel(rid, by="carol"), source_file="c2.json")
    assert not d.accepted and "has ended (cancelled in 'review')" in d.reason
    refused = last(runner, rid, 1)[0]
    assert isinstance(refused, TriggerRefused)
    assert (refused.trigger, refused.by, refused.source_file) == ("cancel", "carol", "c2.json")
    assert acts.COMPENSATED == [("r1/cancel", "review", 1)]


def test_a_trigger_after_a_cancel_is_refused(runner, tmp_path):
    rid = waiting_run(runner, tmp_path)
    runner.deliver(rid, cancel(rid), source_file="c1.json")
    d = runner.deliver(rid, Message(run=rid, trigger="approve", by="alice"), source_file="a1.json")
    assert not d.accepted and "cancelled" in d.reason


# --- the compensation ---------------------------------------------------------------------


def test_a_states_own_on_cancel_beats_the_machines(runner, tmp_path):
    text = MACHINE.replace("review: {approvers: [alice], timeout: 2d}",
                           "review: {approvers: [alice], timeout: 2d, on_cancel: runner_test_actions:release_review}")
    rid = waiting_run(runner, tmp_path, text)
    runner.deliver(rid, cancel(rid), source_file="c1.json")
    assert acts.COMPENSATED == [("r1/cancel", "review:review", 1)]


def test_no_on_cancel_means_no_compensation_records(runner, tmp_path):
    rid = waiting_run(runner, tmp_path, MACHINE.replace("on_cancel: runner_test_actions:release_hold\n", ""))
    runner.deliver(rid, cancel(rid, reason=None), source_file="c1.json")
    assert types(runner, rid)[-2:] == ["waiting", "cancelled"]
    assert '"reason"' not in runner.home.store.path(rid).read_text().splitlines()[-1]


def test_an_abort_resolution_compensates_too(runner, tmp_path):
    acts.SCRIPT["draft"] = [acts.Fatal("bad input")]
    runner.launch(machine(tmp_path), {}, run_id="r1")
    d = runner.deliver("r1", Message(run="r1", resolve="abort", by="ops"), source_file="a1.json")
    assert d.state.status == "cancelled"
    assert types(runner, "r1")[-4:] == ["resolved", "cancelled", "compensation_started", "compensation_finished"]
    assert acts.COMPENSATED == [("r1/cancel", "draft", 1)]


def test_a_failing_on_cancel_is_journaled_notified_and_not_retried(runner, tmp_path, clock):
    rid = waiting_run(runner, tmp_path, MACHINE.replace("release_hold", "broken_release"))
    d = runner.deliver(rid, cancel(rid), source_file="c1.json")
    assert d.accepted and d.state.status == "cancelled" and d.state.todo is None
    finished = last(runner, rid, 1)[0]
    assert (finished.error, finished.error_type) == ("hold service down", "RuntimeError")
    assert [(key, e["reason"]) for key, e in acts.NOTIFIED] == [("r1/cancel/notify", "on_cancel failed")]
    assert "hold service down" in acts.NOTIFIED[0][1]["detail"]
    clock.advance(60)
    runner.advance(rid)
    assert len(acts.COMPENSATED) == 1  # once: a failure is not retried


def test_an_on_cancel_cut_off_by_a_crash_is_called_again_with_the_same_key(runner, tmp_path, home, clock):
    rid = waiting_run(runner, tmp_path, MACHINE.replace("release_hold", "step"))
    acts.SCRIPT["review"] = [acts.Die()]  # on_cancel (`step`, in state review) dies mid-call
    with pytest.raises(acts.Die):
        runner.deliver(rid, cancel(rid), source_file="c1.json")
    assert types(runner, rid)[-2:] == ["cancelled", "compensation_started"]
    restarted = Runner(home, clock=clock)
    rs = restarted.advance(rid)
    assert rs.status == "cancelled" and rs.todo is None
    assert [c for c in acts.CALLS if c[0] == "review"] == [("review", 1, "r1/cancel"), ("review", 2, "r1/cancel")]
    assert types(restarted, rid)[-3:] == ["compensation_started", "compensation_started", "compensation_finished"]
    Runner(home, clock=clock).advance(rid)  # after its outcome: never called again
    assert len([c for c in acts.CALLS if c[0] == "review"]) == 2


def test_an_on_cancel_that_keeps_crashing_is_given_up(runner, tmp_path, home, clock):
    rid = waiting_run(runner, tmp_path, MACHINE.replace("release_hold", "step"))
    acts.SCRIPT["review"] = [acts.Die(), acts.Die(), acts.Die()]
    with pytest.raises(acts.Die):
        runner.deliver(rid, cancel(rid), source_file="c1.json")
    for _ in range(2):
        with pytest.raises(acts.Die):
            Runner(home, clock=clock).advance(rid)
    rs = Runner(home, clock=clock).advance(rid)
    finished = last(runner, rid, 1)[0]
    assert (finished.error_type, finished.attempt) == ("Abandoned", 3) and "cut off 3 times" in finished.error
    assert rs.status == "cancelled" and rs.todo is None and len(acts.CALLS) == 4  # draft + 3 cut-off calls


def test_replay_of_a_cancelled_run_equals_the_live_state(runner, tmp_path):
    rid = waiting_run(runner, tmp_path)
    live = runner.deliver(rid, cancel(rid), source_file="c1.json").state
    assert asdict(fold(runner.home.store.read(rid).records)) == asdict(live)


# --- definitions and messages -------------------------------------------------------------


def test_on_cancel_is_checked_like_every_import_path(tmp_path):
    path = machine(tmp_path, MACHINE.replace("runner_test_actions:release_hold", "runner_test_actions:relase_hold"))
    with pytest.raises(DefinitionError, match=r"holds.yaml:6: .*has no 'relase_hold' \(did you mean 'release_hold'"):
        load_file(path)
    final = MACHINE.replace("done: {final: true}", "done: {final: true, on_cancel: runner_test_actions:release_hold}")
    with pytest.raises(DefinitionError, match="on_cancel cannot be set on a final state"):
        load_file(machine(tmp_path, final, "final.yaml"))


def test_a_definition_without_on_cancel_pins_as_before(tmp_path):
    loaded = load_file(machine(tmp_path, MACHINE.replace("on_cancel: runner_test_actions:release_hold\n", "")))
    assert "on_cancel" not in loaded.definition
    assert all("on_cancel" not in state for state in loaded.definition["states"].values())
    assert load_file(machine(tmp_path)).definition["on_cancel"] == "runner_test_actions:release_hold"


@pytest.mark.parametrize("fields, fragment", [
    ({"cancel": True, "trigger": "approve"}, "cancel takes no 'trigger'"),
    ({"cancel": True, "resolve": "abort"}, "cancel takes no 'resolve'"),
    ({"cancel": True, "data": {"a": 1}}, "cancel takes no 'data'"),
    ({"cancel": "yes"}, "cancel: Input should be a valid boolean"),
    ({"trigger": "approve", "reason": "x"}, "'reason' goes with cancel only"),
    ({"cancel": True, "reason": "x" * 4001}, "reason"),
])
def test_a_cancel_message_is_validated(fields, fragment):
    with pytest.raises(InvalidMessageError, match=fragment):
        parse_message(json.dumps({"run": "r1", "by": "ops", **fields}).encode(), ".json")


def test_a_cancel_message_is_named_for_what_it_does():
    message = parse_message(b"run: r1\ncancel: true\nby: ops\nreason: customer left\n", ".yaml")
    assert (message.cancel, message.reason, message.trigger) == (True, "customer left", None)
    assert message_name(message).split("-")[-2:-1] == ["cancel"]


def test_a_cancel_after_a_deadline_ends_the_run_without_firing_the_timeout(runner, tmp_path, clock):
    rid = waiting_run(runner, tmp_path)
    clock.advance(3 * 86400)  # the wait expired, nobody has advanced the run yet
    d = runner.deliver(rid, cancel(rid), source_file="c1.json")
    assert d.accepted and d.state.status == "cancelled"
    assert "timeout_fired" not in types(runner, rid) and "escalated" not in types(runner, rid)
    assert acts.NOTIFIED == []
