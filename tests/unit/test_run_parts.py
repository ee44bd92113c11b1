"""The runner's parts on their own: run ids, what an action's result becomes, and the
rules that refuse a message from outside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_run_vocabulary import FakeMachine, journal

from engine import Fire
from engine.run.delivery import label, refusal
from engine.run.ids import new_run_id
from engine.run.outcome import outcome
from engine.run.replay import fold
from engine.supervise.message import Message
from journal import Escalated, StepFailed, StepStarted, StepSucceeded, Transition, Waiting

STARTED = StepStarted(state="work", attempt=2, idempotency_key="r1/work/1")


def test_run_ids_are_ulids_that_sort_by_start_time():
    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    ids = [new_run_id(t0 + timedelta(milliseconds=ms)) for ms in (0, 1, 1000, 86_400_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 26 and set(i) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in ids)


@pytest.mark.parametrize(("result", "trigger", "data"), [
    (None, "ok", {}), ("approve", "approve", {}), ({"n": 1}, "ok", {"n": 1}),
    (Fire("reject", {"why": "late"}), "reject", {"why": "late"}), (Fire("done"), "done", {}),
])
def test_what_an_action_returns_becomes_a_step_succeeded(result, trigger, data):
    record = outcome(STARTED, result, 1.5, "ts")
    assert record == StepSucceeded(state="work", attempt=2, trigger=trigger, data=data, duration_ms=1.5, ts="ts")


@pytest.mark.parametrize(("result", "error"), [
    (42, "returned a int; expected None, str, dict or Fire"),
    ({"handle": object()}, "returned data that is not JSON"),
])
def test_a_wrong_result_is_a_failure_no_retry_can_fix(result, error):
    record = outcome(STARTED, result, 1.5, "ts")
    assert isinstance(record, StepFailed) and not record.retryable and record.error_type == "TypeError"
    assert record.error.startswith(error)


def _waiting():
    return fold(journal(Transition(trigger="ok", source="work", dest="review"),
                        Waiting(state="review", triggers=["approve"], approvers=["alice"])))


def test_a_trigger_needs_a_waiting_run_its_trigger_and_an_approver():
    machine, rs = FakeMachine(), _waiting()
    assert refusal(rs, machine, Message(run="r1", trigger="approve", by="alice"), rs.stands_at) is None
    assert refusal(rs, machine, Message(run="r1", trigger="reject", by="alice"), None) == (
        "'reject' is not a trigger of state 'review' (it waits for approve)")
    assert refusal(rs, machine, Message(run="r1", trigger="approve", by="eve"), None) == (
        "'eve' is not an approver of 'review' (approvers: alice)")
    stale = refusal(rs, machine, Message(run="r1", trigger="approve", by="alice"), rs.stands_at - 1)
    assert stale is not None and stale.startswith("stale: ")


def test_a_resolution_needs_an_escalated_run():
    machine, rs = FakeMachine(), _waiting()
    abort = Message(run="r1", resolve="abort", by="bob")
    assert refusal(rs, machine, abort, None) == (
        "run is not escalated (it is waiting in 'review'); nothing to resolve")
    escalated = fold(journal(Escalated(state="work", reason="timeout")))
    assert refusal(escalated, machine, abort, None) is None
    assert label(abort) == "resolve:abort" and label(Message(run="r1", trigger="approve", by="a")) == "approve"
