"""The run's typed vocabulary: statuses, what a record leaves owed, what `plan` answers,
and the few questions a run asks of its machine (any object that answers them will do)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.cli.runs import summary
from engine.definition.spec import StateSpec
from engine.run.plan import Append, Sleep, Stop, plan
from engine.run.replay import fold
from engine.run.status import RunStatus
from engine.run.todo import Cancel, Enter, Failed, Step, Take, TimeoutDue
from engine.supervise.status import JournalStatus, StatusRow
from journal import (
    Escalated,
    Resolved,
    RetryScheduled,
    RunFinished,
    StepFailed,
    StepStarted,
    StepSucceeded,
    TimeoutFired,
    Transition,
    Waiting,
)

from journal_builders import run_started

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
DEFINITION = {
    "name": "m", "version": 1, "initial": "work",
    "states": {"work": {"action": "x:y"}, "review": {"approvers": ["alice"], "timeout": 60.0},
               "done": {"final": True, "outcome": "ok"}},
    "transitions": [{"trigger": "ok", "source": ["work"], "dest": "review"},
                    {"trigger": "approve", "source": ["review"], "dest": "done"}],
}


class FakeMachine:
    """Answers what running needs of a machine, from plain dicts: no loader, no code."""

    name = "m"

    def __init__(self) -> None:
        self.states = {name: StateSpec(**fields) for name, fields in DEFINITION["states"].items()}
        self.edges = {("work", "ok"): "review", ("review", "approve"): "done"}

    def state(self, name: str) -> StateSpec:
        return self.states[name]

    def triggers_from(self, state: str) -> list[str]:
        return [trigger for source, trigger in self.edges if source == state]

    def next_state(self, state: str, trigger: str, data: dict[str, Any]) -> str | None:
        return self.edges.get((state, trigger))

    def retryable(self, state: str, error: BaseException) -> bool:
        return True

    def on_escalate(self, state: str) -> str | None:
        return None

    def resolve(self, import_path: str) -> Any:
        raise AssertionError("planning calls no code")


def journal(*records: Any) -> list[Any]:
    started = run_started(definition=DEFINITION, definition_hash="sha256:0", ts="2026-11-27T09:00:00Z")
    out = [started, *records]
    for seq, record in enumerate(out, 1):
        record.seq, record.ts = seq, record.ts or "2026-11-27T09:00:00Z"
    return out


def test_a_status_is_its_text_everywhere_text_goes():
    assert RunStatus.WAITING == "waiting" and f"{RunStatus.WAITING}" == "waiting"
    assert json.dumps({"status": RunStatus.WAITING}) == '{"status": "waiting"}'
    assert {"waiting": 1}[RunStatus.WAITING] == 1  # same hash as the text: dict keys mix
    assert [str(s) for s in RunStatus] == ["running", "waiting", "retrying", "escalated", "finished", "cancelled"]


def test_status_rows_serialise_as_before():
    rows = [StatusRow(run_id="a", status=JournalStatus.DAMAGED, error="bad"), StatusRow(run_id="b")]
    assert [json.loads(json.dumps(r.to_dict()))["status"] for r in rows] == ["damaged", "starting"]


@pytest.mark.parametrize(("records", "todo"), [
    ((), Enter()),
    ((StepStarted(state="work", attempt=1, idempotency_key="r1/work/1"),), None),
    ((StepStarted(state="work", attempt=1, idempotency_key="k"),
      StepSucceeded(state="work", attempt=1, trigger="ok")), Take("ok", "step")),
    ((StepStarted(state="work", attempt=1, idempotency_key="k"),
      StepFailed(state="work", attempt=1, error="503"),
      RetryScheduled(state="work", attempt=2, due="2026-11-27T09:05:00Z", delay_s=300)), Step(2)),
    ((Transition(trigger="ok", source="work", dest="review"),
      Waiting(state="review", triggers=["approve"]), TimeoutFired(state="review", deadline="x")), TimeoutDue()),
    ((Escalated(state="work", reason="r"), Resolved(action="skip", by="bob", trigger="ok")),
     Take("ok", "resolution")),
    ((Escalated(state="work", reason="r"), Resolved(action="abort", by="bob")), Cancel("bob")),
    ((Escalated(state="work", reason="r"), Resolved(action="retry", by="bob")), Enter()),
], ids=["started", "in-flight", "succeeded", "retry", "timeout", "skip", "abort", "retry-resolution"])
def test_each_record_leaves_its_typed_todo(records, todo):
    assert fold(journal(*records)).todo == todo


def test_a_failure_is_owed_a_decision():
    failed = StepFailed(state="work", attempt=1, error="503")
    rs = fold(journal(StepStarted(state="work", attempt=1, idempotency_key="k"), failed))
    assert rs.todo == Failed(failed) and rs.status == RunStatus.RUNNING


def test_plan_answers_append_stop_or_sleep_from_any_machine():
    machine = FakeMachine()
    move = plan(fold(journal()), machine, NOW)
    assert isinstance(move, Append) and [type(r) for r in move.records] == [StepStarted]
    waiting = journal(Transition(trigger="ok", source="work", dest="review"),
                      Waiting(state="review", triggers=["approve"], deadline="2026-11-27T09:01:00Z"))
    assert plan(fold(waiting), machine, NOW) == Stop(RunStatus.WAITING)
    late = plan(fold(waiting), machine, NOW + timedelta(minutes=2))
    assert isinstance(late, Append) and isinstance(late.records[0], TimeoutFired)
    retrying = fold(journal(StepStarted(state="work", attempt=1, idempotency_key="k"),
                            StepFailed(state="work", attempt=1, error="503"),
                            RetryScheduled(state="work", attempt=2, due="2026-11-27T09:05:00Z", delay_s=300)))
    assert plan(retrying, machine, NOW, rng=random.Random(1)) == Sleep(retrying.deadline)
    due = plan(retrying, machine, NOW + timedelta(minutes=5))
    assert isinstance(due, Append)
    assert due.records == [StepStarted(state="work", attempt=2, idempotency_key="r1/work/1")]
    done = fold(journal(RunFinished(state="done", outcome="ok")))
    assert plan(done, machine, NOW) == Stop(RunStatus.FINISHED)


def test_summary_names_the_attempt_a_retry_will_make():
    rs = fold(journal(StepStarted(state="work", attempt=1, idempotency_key="k"),
                      StepFailed(state="work", attempt=1, error="503"),
                      RetryScheduled(state="work", attempt=2, due="2026-11-27T09:05:00Z", delay_s=300)))
    assert rs.retry_attempt == 2
    assert summary(rs) == "run r1: retrying 'work' (attempt 2) at 2026-11-27 09:05:00Z"
    assert fold(journal()).retry_attempt is None
