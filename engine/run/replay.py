"""Rebuild a run from its journal alone: fold records into a `RunState`, running nothing.

Folding is incremental (`RunState.apply`) so a reader can keep a state up to date as a
journal grows. Besides what `status` shows (state, data, deadline, ...) the state keeps
`todo`: the work a record leaves owed when the next one is missing (engine.run.todo).
`engine.run.plan.plan` turns a state into the next records, purely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.errors import JournalFormatError, ReplayError
from engine.run.brood import Brood
from engine.run.clock import parse_iso
from engine.run.status import RunStatus
from engine.run.todo import Cancel, Compensate, CreateChildren, Enter, Failed, Step, Take, TimeoutDue, Todo
from journal import (
    Cancelled,
    CompensationFinished,
    CompensationStarted,
    Escalated,
    Record,
    Resolved,
    RetryScheduled,
    RunFinished,
    RunStarted,
    Sealed,
    StepAbandoned,
    StepFailed,
    StepStarted,
    StepSucceeded,
    TimeoutFired,
    Transition,
    TriggerReceived,
    TriggerRefused,
    TriggerVoted,
    Upgraded,
    Waiting,
    pinned_definition,
)
from journal.records import FORMAT, ChildFinished, Spawned

# Made or looked up once, not per record: fold runs for every record of thousands of
# journals, and an Enum member costs about three times a global to look up.
_ENTER, _TIMEOUT_DUE = Enter(), TimeoutDue()  # immutable: every fold may share them
_RUNNING, _WAITING, _RETRYING = RunStatus.RUNNING, RunStatus.WAITING, RunStatus.RETRYING
_ESCALATED, _FINISHED, _CANCELLED = RunStatus.ESCALATED, RunStatus.FINISHED, RunStatus.CANCELLED


@dataclass(slots=True)
class RunState:
    """Everything known about a run after folding its journal (a plain object).

    Many fields on purpose: it is a value, the fold of the journal, and each field is one
    fact `status`, `plan` or the supervisor reads; grouping them would cost every fold
    an extra object per record and say nothing more. Slots, not a per-instance dict: a
    supervisor keeps one per run (about 1 KB less each, at 50,000 waiting runs).
    """

    run_id: str = ""
    machine: str = ""
    version: int | str = 0
    definition: dict[str, Any] = field(default_factory=dict)
    definition_hash: str = ""
    source: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    state: str = ""
    status: RunStatus = RunStatus.RUNNING
    data: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    in_flight: StepStarted | None = None
    deadline: datetime | None = None  # waiting deadline, or when the next retry is due
    triggers: list[str] = field(default_factory=list)
    approvers: list[str] | None = None
    escalation: Escalated | None = None
    outcome: str | None = None
    last_seq: int = 0
    updated: str = ""
    step_timeout: float | None = None
    entered: str = ""  # when the run entered its current state: a wait's deadline counts from it
    escalations: int = 0  # how many times the run escalated: numbers each notification
    waiting: Waiting | None = None  # the record that opened the current wait
    code: dict[str, str] = field(default_factory=dict)  # module fingerprints of the definition in force
    # Beyond what `status` shows: what replay needs to resume anywhere.
    started: str = ""
    by: str | None = None
    visits: dict[str, int] = field(default_factory=dict)
    abandons: int = 0  # crash-restarts of the current step
    todo: Todo | None = None
    inbox_files: dict[str, tuple[bool, str]] = field(default_factory=dict)  # file -> (accepted, reason)
    votes: dict[str, list[str]] = field(default_factory=dict)  # trigger -> who approved it in this wait
    # Signatures used -> the record that used it (its seq is filled in when it is written).
    signatures: dict[str, Record] = field(default_factory=dict)
    seal: Sealed | None = None  # the journal's latest seal (engine.run.sealing)
    # Fan-out (engine.run.spawn): the children of the current spawning state, the run that
    # spawned this one, and children its parent no longer wants (left the state, cancelled).
    brood: Brood | None = None
    parent: str | None = None
    parent_state: str | None = None
    unwanted: list[str] = field(default_factory=list)

    @property
    def idempotency_key(self) -> str:
        """f"{run_id}/{state}/{visit}": stable across retries and restarts of one visit."""
        return f"{self.run_id}/{self.state}/{self.visits.get(self.state, 1)}"

    @property
    def stands_at(self) -> int:
        """The seq of the record that opened what the run waits on now (a `waiting` or an
        `escalated`); 0 when it waits on nothing. An inbox file answers one such record."""
        if self.status == RunStatus.WAITING and self.waiting is not None:
            return self.waiting.seq
        if self.status == RunStatus.ESCALATED and self.escalation is not None:
            return self.escalation.seq
        return 0

    @property
    def ended(self) -> bool:
        """Finished or cancelled: it takes no more messages (a cancelled run may still owe
        its `on_cancel` compensation: `todo` is then a `Compensate`)."""
        return self.status in (RunStatus.FINISHED, RunStatus.CANCELLED)

    @property
    def retry_attempt(self) -> int | None:
        """The attempt a scheduled retry will make (None unless the run is retrying)."""
        if self.status == RunStatus.RETRYING and isinstance(self.todo, Step):
            return self.todo.attempt
        return None

    def apply(self, record: Record) -> RunState:
        """Fold one record in (records must come in journal order)."""
        try:
            _HANDLERS[type(record)](self, record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReplayError(self.run_id, record, exc) from exc
        self.last_seq = record.seq
        self.updated = record.ts
        return self

    def extend(self, records: Iterable[Record]) -> RunState:
        """Fold records in (in journal order): `apply` for each, its loop inlined, for the
        supervisor's scan of every journal. After an error, `last_seq` and `updated` are
        those of the last record folded, as after `apply`."""
        handlers = _HANDLERS
        record = done = None
        try:
            for record in records:
                handlers[type(record)](self, record)
                done = record
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReplayError(self.run_id, record, exc) from exc
        finally:
            if done is not None:
                self.last_seq, self.updated = done.seq, done.ts
        return self

    # --- one handler per record type ----------------------------------------------------

    def _run_started(self, r: RunStarted) -> None:
        if r.format > FORMAT:  # a newer writer's records may not mean what this fold assumes
            raise JournalFormatError(r.run_id, r.format, FORMAT)
        self.run_id, self.machine, self.version = r.run_id, r.machine, r.version
        self.definition = pinned_definition(r)
        self.definition_hash, self.source, self.code = r.definition_hash, r.source, r.code
        self.input, self.by, self.started = dict(r.input), r.by, r.ts
        self.state, self.entered = self.definition["initial"], r.ts
        self.visits[self.state] = 1
        self.parent, self.parent_state = r.parent, r.parent_state
        self._running(_ENTER)

    def _step_started(self, r: StepStarted) -> None:
        self.in_flight, self.attempt = r, r.attempt
        # `self._running(None)`, inlined here and in `_transition`: a third of all records
        self.status, self.todo, self.deadline, self.approvers = _RUNNING, None, None, None
        if self.triggers:
            self.triggers = []
        timeout = self.definition["states"][r.state].get("timeout")
        self.step_timeout = float(timeout) if timeout is not None else None

    def _step_succeeded(self, r: StepSucceeded) -> None:
        self.data.update(r.data)
        self.in_flight, self.step_timeout, self.todo = None, None, Take(r.trigger, "step")  # _step_over, inlined
        self.abandons = 0

    def _step_failed(self, r: StepFailed) -> None:
        self._step_over(Failed(r))
        self.abandons = 0

    def _step_abandoned(self, r: StepAbandoned) -> None:
        self._step_over(Step(r.attempt))
        self.abandons += 1

    def _retry_scheduled(self, r: RetryScheduled) -> None:
        self.status, self.deadline, self.todo = _RETRYING, parse_iso(r.due), Step(r.attempt)

    def _transition(self, r: Transition) -> None:
        if r.dest not in self.definition["states"]:  # damage (the chain does not guard the last line)
            raise ValueError(f"transition to '{r.dest}', a state the run's definition does not have")
        if self.brood is not None:
            self._leave_brood(r.source)
        self.state, self.entered = r.dest, r.ts
        self.visits[r.dest] = self.visits.get(r.dest, 0) + 1
        self.attempt, self.abandons = 0, 0
        self.status, self.todo, self.deadline, self.approvers = _RUNNING, _ENTER, None, None  # _running, inlined
        if self.triggers:
            self.triggers = []

    def _waiting(self, r: Waiting) -> None:
        self.status, self.todo, self.waiting = _WAITING, None, r
        self.votes = {}  # a quorum counts within one wait
        self.triggers, self.approvers = list(r.triggers), r.approvers
        self.deadline = parse_iso(r.deadline) if r.deadline else None

    def _trigger_received(self, r: TriggerReceived) -> None:
        self.data.update(r.data)
        self._running(Take(r.trigger, "trigger"))
        self.votes = {}
        self._decided(r)

    def _trigger_voted(self, r: TriggerVoted) -> None:
        """One approval toward a quorum: counted; the run goes on waiting."""
        self.data.update(r.data)
        self.votes.setdefault(r.trigger, []).append(r.by)
        self._decided(r)

    def _decided(self, r: TriggerReceived | TriggerVoted | Resolved | Cancelled | Upgraded) -> None:
        """An accepted decision from outside: its file is answered, its signature spent."""
        if r.source_file:
            self.inbox_files[r.source_file] = (True, "accepted")
        if r.signature:
            self.signatures[r.signature] = r

    def _trigger_refused(self, r: TriggerRefused) -> None:
        if r.source_file:
            self.inbox_files[r.source_file] = (False, r.reason)

    def _timeout_fired(self, r: TimeoutFired) -> None:
        self._running(_TIMEOUT_DUE)

    def _escalated(self, r: Escalated) -> None:
        self.status, self.escalation, self.todo = _ESCALATED, r, None
        self.escalations += 1
        self.in_flight, self.deadline, self.step_timeout = None, None, None

    def _resolved(self, r: Resolved) -> None:
        self.escalation = None
        self.abandons = 0
        self._running(self._resolution(r))
        self._decided(r)

    def _run_finished(self, r: RunFinished) -> None:
        self.status, self.outcome, self.todo, self.deadline = _FINISHED, r.outcome, None, None

    def _cancelled(self, r: Cancelled) -> None:
        self.status, self.todo, self.deadline, self.in_flight = _CANCELLED, None, None, None
        self.step_timeout, self.triggers, self.approvers, self.escalation = None, [], None, None
        if self.brood is not None:  # cancelling a parent cancels its live children
            self.unwanted.extend(self.brood.live)
        # The compensation, if the definition has one, is owed from now on: the state's
        # `on_cancel`, else the machine's (old definitions have neither key).
        action = self.definition["states"].get(self.state, {}).get("on_cancel") or self.definition.get("on_cancel")
        if action:
            self.todo = Compensate(action, 1)
        self._decided(r)

    def _compensation_started(self, r: CompensationStarted) -> None:
        # Owed again until its outcome is journaled: a crash now means one more call, same key.
        self.todo = Compensate(r.action, r.attempt + 1)

    def _compensation_finished(self, r: CompensationFinished) -> None:
        self.todo = None

    def _upgraded(self, r: Upgraded) -> None:
        """From here on the run follows the definition `r` pins (its version, hash, code)."""
        self.definition = pinned_definition(r)
        self.version, self.definition_hash, self.source = r.version, r.definition_hash, r.source
        self.code = r.code
        if self.status == _WAITING:
            # The wait is opened again under the new definition (its triggers, approvers
            # and timeout; the deadline still counts from when the state was entered).
            self._running(_ENTER)
        self._decided(r)

    def _sealed(self, r: Sealed) -> None:
        self.seal = r  # a checkpoint: the run itself does not move

    def _spawned(self, r: Spawned) -> None:
        visit = self.visits.get(r.state, 1)
        brood = self.brood
        if brood is None or brood.state != r.state or brood.visit != visit:
            brood = self.brood = Brood(r.state, visit, r.total)
            self.data[r.state] = {}  # a new visit collects its own results
        for child in r.children:
            brood.started[child.run_id] = child.key
        self._running(CreateChildren(r.children))

    def _child_finished(self, r: ChildFinished) -> None:
        """Count the child's end once, and keep its result in data[state][key]."""
        brood = self.brood
        if brood is None or brood.state != r.state or not brood.end(r.child, r.status):
            return  # repeated (never written twice by the engine) or of another visit: no effect
        result = {"run": r.child, "status": r.status, "outcome": r.outcome, "data": r.data}
        collected = self.data.get(r.state)
        self.data[r.state] = {**(collected if isinstance(collected, dict) else {}), r.key: result}

    def _leave_brood(self, source: str) -> None:
        brood = self.brood
        if brood is None or brood.state != source:
            return
        spawn = self.definition["states"].get(source, {}).get("spawn") or {}
        if not spawn.get("let_finish"):
            self.unwanted.extend(brood.live)
        self.brood = None

    # --- shared pieces ------------------------------------------------------------------

    def _resolution(self, r: Resolved) -> Todo:
        """What a human's resolution of the escalation leaves owed."""
        if r.action == "retry":
            self.entered = r.ts  # a wait retried by a human gets a fresh deadline
            return _ENTER
        if r.action == "skip" and r.trigger is not None:
            return Take(r.trigger, "resolution")
        if r.action == "abort":
            return Cancel(r.by)
        raise ValueError(f"unknown resolution {r.action!r} (skip needs a trigger)")

    def _running(self, todo: Todo | None) -> None:
        self.status, self.todo, self.deadline, self.approvers = _RUNNING, todo, None, None
        if self.triggers:  # most records find none: no new empty list each time
            self.triggers = []

    def _step_over(self, todo: Todo) -> None:
        self.in_flight, self.step_timeout, self.todo = None, None, todo


_HANDLERS: dict[type[Record], Callable[[RunState, Any], None]] = {
    RunStarted: RunState._run_started,
    StepStarted: RunState._step_started,
    StepSucceeded: RunState._step_succeeded,
    StepFailed: RunState._step_failed,
    StepAbandoned: RunState._step_abandoned,
    RetryScheduled: RunState._retry_scheduled,
    Transition: RunState._transition,
    Waiting: RunState._waiting,
    TriggerReceived: RunState._trigger_received,
    TriggerRefused: RunState._trigger_refused,
    TriggerVoted: RunState._trigger_voted,
    TimeoutFired: RunState._timeout_fired,
    Escalated: RunState._escalated,
    Resolved: RunState._resolved,
    RunFinished: RunState._run_finished,
    Cancelled: RunState._cancelled,
    CompensationStarted: RunState._compensation_started,
    CompensationFinished: RunState._compensation_finished,
    Upgraded: RunState._upgraded,
    Sealed: RunState._sealed,
    Spawned: RunState._spawned,
    ChildFinished: RunState._child_finished,
}


def fold(records: Iterable[Record]) -> RunState:
    """The state of a run after all of `records` (its journal, in order).

    `RunState.apply` for each record, inlined: replay folds thousands of journals, and
    no handler reads `last_seq` or `updated`, so they are set once, from the last record.
    """
    state = RunState()
    handlers = _HANDLERS
    last = None
    try:
        for last in records:
            handlers[type(last)](state, last)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReplayError(state.run_id, last, exc) from exc
    if last is not None:
        state.last_seq = last.seq
        state.updated = last.ts
    return state
