"""Runner behaviour on a fake clock: tasks, retries, waits, triggers, escalation, resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ReplayError, RunExistsError, UnknownRunError
from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.runner import Runner
from engine.supervise.message import Message
from journal import CorruptJournalError, JournalLockedError
from journal.records import record_type

import runner_test_actions as acts
from damage import lines_of, write_lines
from journal_builders import story

DAY = 86400

MACHINE = """
name: renewal
version: 1
initial: draft
on_escalate: runner_test_actions:notify
states:
  draft:
    action: runner_test_actions:step
    retry: {attempts: 3, backoff: 2s, factor: 2, max_backoff: 1m, jitter: true}
    non_retryable: [Fatal]
  review: {approvers: [alice, bob], timeout: 2d}
  confirm: {timeout: 1h}
  send: {action: runner_test_actions:step, idempotent: false}
  done: {final: true}
  closed: {final: true, outcome: rejected}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: approve, source: review, dest: confirm}
  - {trigger: reject, source: review, dest: closed}
  - {trigger: confirm, source: confirm, dest: send}
  - {trigger: ok, source: send, dest: done}
"""


@pytest.fixture
def clock():
    return FakeClock("2026-11-27T09:41:00Z")


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    path = tmp_path / "renewal.yaml"
    path.write_text(MACHINE)
    return path


def records(runner: Runner, run_id: str) -> list:
    return story(runner.home.store.read(run_id).records)


def types(runner: Runner, run_id: str) -> list[str]:
    return [record_type(r) for r in records(runner, run_id)]


def msg(run_id: str, trigger: str | None = None, by: str = "alice", **kw) -> Message:
    return Message(run=run_id, trigger=trigger, by=by, **kw)


def to_review(runner: Runner, machine: Path) -> str:
    rid = runner.start(machine, {"customer": "acme"}, run_id="r1")
    rs = runner.advance(rid)
    assert (rs.status, rs.state) == ("waiting", "review")
    return rid


# --- tasks and retries ------------------------------------------------------------------


def test_task_runs_once_and_waits_with_a_journaled_deadline(runner, machine, clock):
    rid = to_review(runner, machine)
    assert acts.CALLS == [("draft", 1, "r1/draft/1")]
    rs = runner.read(rid)
    assert rs.deadline.isoformat() == "2026-11-29T09:41:00+00:00"
    assert rs.triggers == ["approve", "reject"] and rs.approvers == ["alice", "bob"]
    assert types(runner, rid) == ["run_started", "step_started", "step_succeeded", "transition", "waiting"]


def test_start_is_idempotent_on_id(runner, machine, tmp_path):
    assert runner.start(machine, {}, run_id="same") == runner.start(machine, {}, run_id="same")
    assert len(records(runner, "same")) == 1
    other = tmp_path / "other.yaml"
    other.write_text(MACHINE.replace("name: renewal", "name: other"))
    with pytest.raises(RunExistsError):
        runner.start(other, {}, run_id="same")


def test_retry_waits_durably_then_runs_the_next_attempt_with_the_same_key(runner, machine, clock):
    acts.SCRIPT["draft"] = [acts.Flaky("503"), acts.Flaky("503")]
    rid = runner.start(machine, {}, run_id="r1")
    rs = runner.advance(rid)
    assert rs.status == "retrying" and acts.CALLS == [("draft", 1, "r1/draft/1")]
    retry = records(runner, rid)[-1]
    assert retry.attempt == 2 and 1.0 <= retry.delay_s <= 2.0  # jitter within [d/2, d]
    assert runner.advance(rid).status == "retrying"  # not due yet: nothing is called
    assert len(acts.CALLS) == 1
    clock.advance(retry.delay_s)
    rs = runner.advance(rid)
    assert rs.status == "retrying" and records(runner, rid)[-1].attempt == 3
    assert 2.0 <= records(runner, rid)[-1].delay_s <= 4.0
    rs = runner.run(rid)  # run() sleeps through the wait on the fake clock
    assert rs.state == "review"
    assert [("draft", a, "r1/draft/1") for a in (1, 2, 3)] == acts.CALLS


def test_exhausted_retries_escalate_with_a_ticket_and_notification(runner, machine, clock):
    acts.SCRIPT["draft"] = [acts.Flaky("down")] * 3
    rid = runner.start(machine, {}, run_id="r1")
    rs = runner.run(rid)
    assert rs.status == "escalated" and rs.escalation.reason == "retries exhausted"
    ticket = json.loads((runner.home.escalations / "r1.json").read_text())
    assert ticket["reason"] == "retries exhausted" and ticket["state"] == "draft"
    assert "ratchet resolve r1 retry --by NAME" in ticket["resolve"] and ticket["notified"]
    [(key, info)] = acts.NOTIFIED
    assert key == "r1/escalation/1" and info["reason"] == "retries exhausted"


def test_non_retryable_error_escalates_at_once(runner, machine):
    acts.SCRIPT["draft"] = [acts.Fatal("card declined")]
    rs = runner.run(runner.start(machine, {}, run_id="r1"))
    assert rs.escalation.reason == "non-retryable error" and len(acts.CALLS) == 1


def test_error_transition_is_taken_when_retries_are_exhausted(runner, machine, tmp_path):
    path = tmp_path / "witherror.yaml"
    path.write_text(MACHINE + "  - {trigger: error, source: draft, dest: closed}\n")
    acts.SCRIPT["draft"] = [acts.Fatal("no")]
    rs = runner.run(runner.start(path, {}, run_id="r1"))
    assert (rs.status, rs.state, rs.outcome) == ("finished", "closed", "rejected")


def test_a_trigger_without_transition_escalates_without_retry(runner, machine):
    acts.SCRIPT["draft"] = ["nowhere"]
    rs = runner.run(runner.start(machine, {}, run_id="r1"))
    assert rs.escalation.reason == "no transition" and len(acts.CALLS) == 1


def test_returned_dict_is_merged_into_data(runner, machine):
    acts.SCRIPT["draft"] = [{"summary": "ok", "n": (1, 2)}]
    rs = runner.run(runner.start(machine, {}, run_id="r1"))
    assert rs.data == {"summary": "ok", "n": [1, 2]}
    assert runner.read("r1").data == rs.data


# --- crashes mid-step ---------------------------------------------------------------------


def test_in_flight_idempotent_step_is_rerun_with_the_same_key(runner, machine):
    acts.SCRIPT["draft"] = [acts.Die()]
    rid = runner.start(machine, {}, run_id="r1")
    with pytest.raises(acts.Die):
        runner.advance(rid)
    assert runner.read(rid).in_flight is not None
    rs = runner.advance(rid)
    assert rs.state == "review"
    assert acts.CALLS == [("draft", 1, "r1/draft/1")] * 2
    assert types(runner, rid)[2:5] == ["step_abandoned", "step_started", "step_succeeded"]


def test_in_flight_non_idempotent_step_escalates_and_is_never_called_again(runner, machine):
    rid = to_review(runner, machine)
    runner.deliver(rid, msg(rid, "approve"))
    acts.SCRIPT["send"] = [acts.Die()]
    with pytest.raises(acts.Die):
        runner.deliver(rid, msg(rid, "confirm"))
    rs = runner.advance(rid)
    assert rs.status == "escalated" and rs.escalation.reason == "unknown outcome"
    assert runner.advance(rid).status == "escalated"
    assert [c for c in acts.CALLS if c[0] == "send"] == [("send", 1, "r1/send/1")]


def test_step_abandoned_three_times_escalates_as_stalled(runner, machine):
    acts.SCRIPT["draft"] = [acts.Die()] * 4
    rid = runner.start(machine, {}, run_id="r1")
    for _ in range(4):
        with pytest.raises(acts.Die):
            runner.advance(rid)
    rs = runner.advance(rid)
    assert rs.escalation.reason == "stalled repeatedly" and len(acts.CALLS) == 4


def test_supervisor_timeout_counts_as_a_failed_attempt(runner, machine):
    acts.SCRIPT["draft"] = [acts.Die()]
    rid = runner.start(machine, {}, run_id="r1")
    with pytest.raises(acts.Die):
        runner.advance(rid)
    rs = runner.advance(rid, abandoned="timeout")
    failed = [r for r in records(runner, rid) if type(r).__name__ == "StepFailed"]
    assert failed[0].error_type == "Timeout" and rs.status == "retrying"


def test_a_timeout_reason_about_another_step_is_not_applied_to_the_one_in_flight(runner, machine):
    acts.SCRIPT["draft"] = [acts.Die()]
    rid = runner.start(machine, {}, run_id="r1")
    with pytest.raises(acts.Die):
        runner.advance(rid)
    in_flight = runner.read(rid).in_flight.seq
    rs = runner.advance(rid, abandoned="timeout", abandoned_seq=in_flight - 1)
    assert rs.state == "review"  # re-run with the same key, not failed as timed out
    assert not [r for r in records(runner, rid) if type(r).__name__ == "StepFailed"]


def test_a_second_process_gets_run_locked(runner, machine):
    rid = runner.start(machine, {}, run_id="r1")
    with runner.home.store.writer(rid), pytest.raises(JournalLockedError, match="r1"):
        runner.advance(rid)


def test_unknown_run(runner):
    with pytest.raises(UnknownRunError):
        runner.advance("nope")


# --- waits, triggers, timeouts ----------------------------------------------------------


def test_two_day_approval_wait(runner, machine, clock):
    rid = to_review(runner, machine)
    clock.advance(2 * DAY - 60)
    assert runner.advance(rid).status == "waiting"
    d = runner.deliver(rid, msg(rid, "approve", by="bob", comment="fine"), source_file="f1.json")
    assert d.accepted and d.state.state == "confirm"
    received = [r for r in records(runner, rid) if type(r).__name__ == "TriggerReceived"][0]
    assert (received.by, received.source_file, received.comment) == ("bob", "f1.json", "fine")


def test_approval_from_a_non_approver_is_refused_and_journaled(runner, machine):
    rid = to_review(runner, machine)
    d = runner.deliver(rid, msg(rid, "approve", by="mallory"))
    assert not d.accepted and "'mallory' is not an approver" in d.reason
    assert d.state.status == "waiting" and types(runner, rid)[-1] == "trigger_refused"


def test_stale_trigger_for_a_state_the_run_left_is_refused(runner, machine):
    rid = to_review(runner, machine)
    assert runner.deliver(rid, msg(rid, "approve")).accepted
    d = runner.deliver(rid, msg(rid, "approve", by="bob"))
    assert not d.accepted and "not a trigger of state 'confirm'" in d.reason


def test_trigger_to_a_running_run_is_refused_naming_its_state(runner, machine):
    acts.SCRIPT["draft"] = [acts.Flaky("x")]
    rid = runner.start(machine, {}, run_id="r1")
    runner.advance(rid)
    d = runner.deliver(rid, msg(rid, "approve"))
    assert not d.accepted and "retrying in 'draft'" in d.reason


def test_delivery_is_idempotent_on_the_source_file(runner, machine):
    rid = to_review(runner, machine)
    first = runner.deliver(rid, msg(rid, "approve"), source_file="a.json")
    again = runner.deliver(rid, msg(rid, "approve"), source_file="a.json")
    assert first.accepted and again.accepted
    assert types(runner, rid).count("trigger_received") == 1


def test_timeout_without_transition_escalates(runner, machine, clock):
    rid = to_review(runner, machine)
    clock.advance(2 * DAY)
    rs = runner.advance(rid)
    assert rs.status == "escalated" and rs.escalation.reason == "timeout"
    assert types(runner, rid)[-2:] == ["timeout_fired", "escalated"]
    assert (runner.home.escalations / "r1.json").exists()


def test_deadline_passed_beats_a_late_approval(runner, machine, clock):
    rid = to_review(runner, machine)
    clock.advance(2 * DAY + 1)
    d = runner.deliver(rid, msg(rid, "approve"))
    assert not d.accepted and "escalated" in d.reason


def test_timeout_transition_is_taken(runner, machine, clock):
    rid = to_review(runner, machine)
    runner.deliver(rid, msg(rid, "approve"))
    clock.advance(3600)
    assert runner.advance(rid).escalation.reason == "timeout"  # confirm has no timeout transition


def test_guard_not_met_is_refused(runner, tmp_path):
    path = tmp_path / "guarded.yaml"
    path.write_text(MACHINE.replace(
        "{trigger: approve, source: review, dest: confirm}",
        "{trigger: approve, source: review, dest: confirm, conditions: runner_test_actions:big_enough}"))
    rid = to_review(runner, path)
    d = runner.deliver(rid, msg(rid, "approve", data={"amount": 5}))
    assert not d.accepted and d.reason == "conditions not met"
    assert runner.deliver(rid, msg(rid, "approve", data={"amount": 500})).accepted


# --- resolution -----------------------------------------------------------------------------


def escalate_on_timeout(runner, machine, clock) -> str:
    rid = to_review(runner, machine)
    clock.advance(2 * DAY)
    assert runner.advance(rid).status == "escalated"
    return rid


def test_resolve_retry_reenters_the_wait_with_a_new_deadline(runner, machine, clock):
    rid = escalate_on_timeout(runner, machine, clock)
    d = runner.deliver(rid, msg(rid, resolve="retry", by="carol"))
    assert d.accepted and d.state.status == "waiting"
    assert (d.state.deadline - clock.now()).total_seconds() == 2 * DAY
    assert not (runner.home.escalations / "r1.json").exists()


def test_resolve_skip_fires_the_trigger(runner, machine, clock):
    rid = escalate_on_timeout(runner, machine, clock)
    d = runner.deliver(rid, msg(rid, "reject", resolve="skip", by="carol"))  # a skip fires 'reject':
    assert not d.accepted and "not an approver of 'review'" in d.reason      # its approvers only
    d = runner.deliver(rid, msg(rid, "reject", resolve="skip", by="alice"))
    assert d.accepted and (d.state.status, d.state.outcome) == ("finished", "rejected")


def test_resolve_skip_with_an_unknown_trigger_is_refused(runner, machine, clock):
    rid = escalate_on_timeout(runner, machine, clock)
    d = runner.deliver(rid, msg(rid, "confirm", resolve="skip", by="carol"))
    assert not d.accepted and "no transition for 'confirm'" in d.reason


def test_resolve_abort_cancels(runner, machine, clock):
    rid = escalate_on_timeout(runner, machine, clock)
    d = runner.deliver(rid, msg(rid, resolve="abort", by="carol"))
    assert d.state.status == "cancelled" and types(runner, rid)[-2:] == ["resolved", "cancelled"]


def test_resolve_retry_reruns_a_task_with_a_fresh_attempt_and_the_same_key(runner, machine):
    acts.SCRIPT["draft"] = [acts.Flaky("x")] * 3
    rid = runner.start(machine, {}, run_id="r1")
    runner.run(rid)
    d = runner.deliver(rid, msg(rid, resolve="retry", by="carol"))
    assert d.state.state == "review" and acts.CALLS[-1] == ("draft", 1, "r1/draft/1")


def test_resolution_of_a_run_not_escalated_is_refused(runner, machine):
    rid = to_review(runner, machine)
    d = runner.deliver(rid, msg(rid, resolve="abort", by="carol"))
    assert not d.accepted and "not escalated" in d.reason


def test_missing_ticket_is_recreated_on_replay(runner, machine, clock):
    rid = escalate_on_timeout(runner, machine, clock)
    (runner.home.escalations / "r1.json").unlink()
    runner.advance(rid)
    assert json.loads((runner.home.escalations / "r1.json").read_text())["reason"] == "timeout"


def test_a_broken_notifier_is_logged_in_the_ticket(runner, machine, clock, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(MACHINE.replace("runner_test_actions:notify", "runner_test_actions:broken_notify"))
    rid = to_review(runner, path)
    clock.advance(2 * DAY)
    assert runner.advance(rid).status == "escalated"
    ticket = json.loads((runner.home.escalations / "r1.json").read_text())
    assert "mail server down" in ticket["notify_error"]


# --- crash leftovers found by review ------------------------------------------------------


def test_a_wait_cut_off_before_its_waiting_record_keeps_its_original_deadline(runner, machine, clock):
    rid = to_review(runner, machine)
    path = runner.home.store.path(rid)
    lines = lines_of(path)
    assert b'"type":"waiting"' in lines[-2] and b'"type":"sealed"' in lines[-1]
    write_lines(path, lines[:-2])  # the crash came after the transition into `review`
    clock.advance(2 * DAY + 1)  # past the deadline counted from entering `review`
    rs = runner.advance(rid)
    assert rs.status == "escalated" and rs.escalation.reason == "timeout"


def test_a_ticket_left_by_a_crash_after_the_resolution_is_removed_on_replay(runner, machine, clock):
    rid = escalate_on_timeout(runner, machine, clock)
    ticket = runner.home.escalations / "r1.json"
    saved = ticket.read_bytes()
    runner.deliver(rid, msg(rid, resolve="skip", trigger="approve", by="alice"))
    assert not ticket.exists()
    ticket.write_bytes(saved)  # as if the process died between `resolved` and the unlink
    runner.advance(rid)
    assert not ticket.exists()


def test_the_notification_key_numbers_escalations_not_journal_lines(runner, machine, clock):
    rid = escalate_on_timeout(runner, machine, clock)
    runner.deliver(rid, msg(rid, resolve="retry", by="carol"))
    clock.advance(2 * DAY)
    runner.advance(rid)
    assert [key for key, _ in acts.NOTIFIED] == ["r1/escalation/1", "r1/escalation/2"]


def test_a_journal_that_does_not_fit_its_definition_is_a_clear_error(runner, machine):
    rid = to_review(runner, machine)
    path = runner.home.store.path(rid)
    path.write_bytes(path.read_bytes().replace(b'"state":"draft","attempt"', b'"state":"nope","attempt"', 1))
    with pytest.raises(ReplayError, match=r"run 'r1': record #2 \(StepStarted\) does not fit the run"):
        runner.advance(rid)


def test_a_runner_reads_only_the_lines_added_since_it_last_held_the_run(runner, machine, clock):
    rid = to_review(runner, machine)
    Runner(runner.home, clock=clock).deliver(rid, msg(rid, "approve"))  # another process moves it on
    path = runner.home.store.path(rid)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"type":"run_started"', b'"type":"run_startex"', 1))  # same length
    with pytest.raises(CorruptJournalError):  # a full replay now fails on line 1...
        Runner(runner.home, clock=clock).read(rid)
    d = runner.deliver(rid, msg(rid, "confirm"))  # ...this runner never reads it again
    assert d.accepted and d.state.status == "finished"


GUARDED = """
name: guarded
version: 1
initial: charge
states:
  charge: {action: runner_test_actions:step, idempotent: false}
  done: {final: true}
transitions:
  - {trigger: ok, source: charge, dest: done, conditions: runner_test_actions:CONDITION}
"""


def test_a_condition_that_raises_escalates_and_keeps_the_outcome(runner, tmp_path):
    path = tmp_path / "guarded.yaml"
    path.write_text(GUARDED.replace("CONDITION", "raising_condition"))
    rs = runner.launch(path, {}, run_id="r1")
    assert rs.status == "escalated" and rs.escalation.reason == "condition failed"
    assert "KeyError" in rs.escalation.detail and "'ok' from 'charge'" in rs.escalation.detail
    assert types(runner, "r1")[2:4] == ["step_succeeded", "escalated"]  # the outcome is kept
    assert runner.advance("r1").status == "escalated" and len(acts.CALLS) == 1


def test_a_condition_cannot_change_the_runs_data(runner, tmp_path):
    path = tmp_path / "guarded.yaml"
    path.write_text(GUARDED.replace("CONDITION", "meddling_condition"))
    rs = runner.launch(path, {}, run_id="r1")
    assert rs.status == "finished" and "touched_by_a_guard" not in rs.data
    assert runner.read("r1").data == rs.data


def test_a_journal_replaced_under_the_same_inode_is_folded_again(runner, machine, clock, tmp_path):
    rid = to_review(runner, machine)  # this runner now keeps r1's state
    other = Runner(Home(tmp_path / "other").ensure(), clock=clock)
    other.start(machine, {"customer": "beta"}, run_id="r1")
    other.advance("r1")
    other.deliver("r1", msg("r1", "approve"))
    path = runner.home.store.path(rid)
    path.write_bytes(other.home.store.path("r1").read_bytes())  # same inode, longer, another chain
    assert runner.advance(rid).input == {"customer": "beta"}


def test_a_message_that_answers_an_earlier_wait_is_refused_as_stale(runner, machine):
    rid = to_review(runner, machine)
    stood_at = runner.read(rid).stands_at
    d = runner.deliver(rid, msg(rid, "approve"), source_file="f1", answers=stood_at - 1)
    assert not d.accepted and d.reason.startswith("stale:") and d.state.state == "review"
    d = runner.deliver(rid, msg(rid, "approve"), source_file="f2", answers=stood_at)
    assert d.accepted and d.state.state == "confirm"
