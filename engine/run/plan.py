"""What a run does next, as a pure function of its `RunState`, the machine and the time.

`plan()` returns the records to journal next (`Append`), or `Stop`/`Sleep` when there is
nothing to do now. It calls no action and writes nothing: the runner journals what it
returns (and calls the action after a `step_started`). Because it depends only on the
folded state, replaying any prefix of a journal and planning from there resumes the run
exactly where it stopped; tests check this for every prefix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from engine.definition.pinned import PinnedRetry
from engine.definition.reserved import ERROR, FAILED, JOINED, TIMEOUT
from engine.errors import ConditionError, ImportPathError
from engine.run.clock import iso, parse_iso
from engine.run.compensation import ABANDONED
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from engine.run.spawn import SPAWN_FAILED, Fail, Fire, decide
from engine.run.status import RunStatus
from engine.run.todo import Cancel, Cause, Compensate, CreateChildren, Enter, Failed, Step, Take, TimeoutDue
from journal import (
    Cancelled,
    CompensationFinished,
    CompensationStarted,
    Escalated,
    Record,
    RetryScheduled,
    RunFinished,
    StepAbandoned,
    StepFailed,
    StepStarted,
    TimeoutFired,
    Transition,
    Waiting,
)

MAX_ABANDONS = 3  # crash-restarts of one step before it is escalated as "stalled repeatedly"

# Escalation reasons (also shown by `status` and in tickets).
UNKNOWN_OUTCOME = "unknown outcome"
STALLED = "stalled repeatedly"
TIMED_OUT = "timeout"
EXHAUSTED = "retries exhausted"
NON_RETRYABLE = "non-retryable error"
NO_TRANSITION = "no transition"
CONDITION_FAILED = "condition failed"
CODE_CHANGED = "code changed"
FIX_CODE = ("fix the code (or upgrade the run), restart a running supervisor (its workers keep "
            "the modules they imported), then resolve with retry")


@dataclass(frozen=True)
class Append:
    """Journal `records` next, in order, as one batch (their `ts` still to be set)."""

    records: list[Record]


@dataclass(frozen=True)
class Stop:
    """Nothing to do until something outside happens (waiting, escalated, ended)."""

    why: str


@dataclass(frozen=True)
class Sleep:
    """A retry is scheduled: nothing to do before `until`."""

    until: datetime


Move = Append | Stop | Sleep


class Uniform(Protocol):
    """Where jitter comes from: `random` itself, or a seeded `random.Random` in tests."""

    def uniform(self, a: float, b: float) -> float: ...


def plan(rs: RunState, machine: RunnableMachine, now: datetime, *, abandoned: str | None = None,
         rng: random.Random | None = None) -> Move:
    """What comes next for `rs` at `now`: records to append, or Stop / Sleep.

    `abandoned` says why an in-flight step found in the journal has no outcome: a
    restart ("worker died", the default) or the supervisor's "timeout".
    """
    if rs.ended:
        if isinstance(rs.todo, Compensate):  # a cancelled run's on_cancel is still owed
            return Append([_compensation(rs, rs.todo)])
        return Stop(rs.status)
    if rs.status == RunStatus.ESCALATED:
        return Stop(RunStatus.ESCALATED)
    if rs.in_flight is not None:
        return Append(_recover(rs, rs.in_flight, machine, abandoned or "worker died"))
    match rs.todo:
        case None:
            settled = _settle(rs, machine) if rs.status == RunStatus.WAITING else None
            if settled:  # a spawning state's join holds or fails, or a slot freed up
                return Append(settled)
            if rs.status == RunStatus.WAITING and rs.deadline is not None and now >= rs.deadline:
                return Append([TimeoutFired(state=rs.state, deadline=iso(rs.deadline))])
            return Stop(rs.status)
        case Enter():
            return Append(_enter(rs, machine, now))
        case Step(attempt):
            if rs.status == RunStatus.RETRYING and rs.deadline is not None and now < rs.deadline:
                return Sleep(rs.deadline)
            return Append([_started(rs, attempt)])
        case Take(trigger, cause):
            return Append(_take(rs, machine, trigger, cause))
        case Failed(failure):
            return Append(_failed(rs, machine, failure, now, rng or random))
        case TimeoutDue():
            return Append(_take(rs, machine, TIMEOUT, "timeout"))
        case Cancel(by):
            return Append([Cancelled(by=by, reason="aborted by resolution")])
        case CreateChildren():  # created by the runner before it plans: now join, top up or wait
            return Append(_settle(rs, machine) or [_wait(rs, machine, now)])
    raise ValueError(f"run {rs.run_id}: unknown todo {rs.todo!r}")  # a bug in replay, not data


def retry_delay(policy: PinnedRetry, attempt: int, rng: Uniform) -> float:
    """Seconds before the attempt after `attempt`: exponential, capped, jittered in [d/2, d]."""
    delay = min(policy.max_backoff, policy.backoff * policy.factor ** (attempt - 1))
    return rng.uniform(delay / 2, delay) if policy.jitter else delay


def escalation(rs: RunState, reason: str, detail: str) -> Escalated:
    return Escalated(state=rs.state, reason=reason, detail=detail)


def _compensation(rs: RunState, owed: Compensate) -> Record:
    """Call on_cancel (always with the key f"{run_id}/cancel"), unless crashes cut off so
    many calls already that another would only crash again."""
    cut_off = owed.attempt - 1
    if cut_off >= MAX_ABANDONS:
        return CompensationFinished(action=owed.action, attempt=cut_off, error_type=ABANDONED,
                                    error=f"cut off {cut_off} times (its process died during the call); "
                                          "not called again")
    return CompensationStarted(action=owed.action, attempt=owed.attempt, idempotency_key=f"{rs.run_id}/cancel")


def _started(rs: RunState, attempt: int) -> StepStarted:
    return StepStarted(state=rs.state, attempt=attempt, idempotency_key=rs.idempotency_key)


def _enter(rs: RunState, machine: RunnableMachine, now: datetime) -> list[Record]:
    spec = machine.state(rs.state)
    if spec.kind == "task":
        return [_started(rs, 1)]
    if spec.kind == "final":
        return [RunFinished(state=rs.state, outcome=spec.outcome)]
    if spec.spawn is not None:
        return _settle(rs, machine) or [_wait(rs, machine, now)]
    return [_wait(rs, machine, now)]


def _settle(rs: RunState, machine: RunnableMachine) -> list[Record]:
    """A spawning state's next records (engine.run.spawn.decide); [] when it just waits."""
    decision = decide(rs, machine)
    if decision is None:
        return []
    if isinstance(decision, Fire):
        move = _next_or_escalate(rs, machine, decision.trigger)
        if move is not None:
            return [move]
        return [escalation(rs, NO_TRANSITION, f"the join of '{rs.state}' fired '{decision.trigger}' and no "
                                              "transition whose conditions hold leaves it; fix the definition, "
                                              "then resolve")]
    if isinstance(decision, Fail):
        return [escalation(rs, SPAWN_FAILED, decision.detail)]
    return [decision]


def _wait(rs: RunState, machine: RunnableMachine, now: datetime) -> Waiting:
    spec = machine.state(rs.state)
    # From when the state was entered, not from now: replay after a crash between the
    # transition and its `waiting` record must not push the deadline back.
    entered = parse_iso(rs.entered) if rs.entered else now
    deadline = iso(entered + timedelta(seconds=spec.timeout)) if spec.timeout else None
    internal = (TIMEOUT, JOINED, FAILED) if spec.spawn is not None else (TIMEOUT,)  # the join fires its own
    triggers = [t for t in machine.triggers_from(rs.state) if t not in internal]
    return Waiting(state=rs.state, triggers=triggers, approvers=spec.approvers, deadline=deadline)


def _take(rs: RunState, machine: RunnableMachine, trigger: str, cause: Cause) -> list[Record]:
    move = _next_or_escalate(rs, machine, trigger)
    if move is not None:
        return [move]
    if cause == "timeout":
        why = " whose conditions hold" if TIMEOUT in machine.triggers_from(rs.state) else ""
        detail = f"the wait in '{rs.state}' expired and no 'timeout' transition{why} leaves it"
        return [escalation(rs, TIMED_OUT, detail)]
    return [escalation(rs, NO_TRANSITION,
                       f"'{rs.state}' has no transition for trigger '{trigger}' (from the {cause}), "
                       "or its conditions are not met; fix the definition, then resolve")]


def _next_or_escalate(rs: RunState, machine: RunnableMachine, trigger: str) -> Transition | Escalated | None:
    """The transition `trigger` takes from the current state; an escalation if asking
    raised (a condition that raised, or whose code no longer imports); None if no
    transition leads anywhere. Every place plan asks for a transition asks here: the
    outcome that led to the question is already queued, and must never be lost to it."""
    try:
        dest = machine.next_state(rs.state, trigger, rs.data)
    except ConditionError as exc:
        if isinstance(exc.__cause__, ImportPathError):
            return escalation(rs, CODE_CHANGED, f"{exc.__cause__} (a condition of '{trigger}'); {FIX_CODE}")
        return escalation(rs, CONDITION_FAILED, str(exc))
    return Transition(trigger=trigger, source=rs.state, dest=dest) if dest is not None else None


def _recover(rs: RunState, step: StepStarted, machine: RunnableMachine, reason: str) -> list[Record]:
    spec = machine.state(step.state)
    what = f"step '{step.state}' attempt {step.attempt} (key {step.idempotency_key}, seq {step.seq})"
    if not spec.idempotent:
        # Never call a non-idempotent action twice: a human must find out what happened.
        return [escalation(rs, UNKNOWN_OUTCOME,
                           f"{what} has no recorded outcome ({reason}) and is not idempotent; "
                           "check the external system, then resolve with retry or skip")]
    if reason == "timeout":
        limit = f" of {spec.timeout:g}s" if spec.timeout else ""
        return [StepFailed(state=step.state, attempt=step.attempt, error=f"exceeded its timeout{limit}",
                           error_type="Timeout", retryable=True)]
    if rs.abandons >= MAX_ABANDONS:
        return [escalation(rs, STALLED, f"{what} was abandoned {rs.abandons} times ({reason})")]
    return [StepAbandoned(state=step.state, attempt=step.attempt, reason=reason), _started(rs, step.attempt)]


def _failed(rs: RunState, machine: RunnableMachine, failure: StepFailed, now: datetime,
            rng: Uniform) -> list[Record]:
    if failure.error_type == ImportPathError.__name__:
        # A deploy broke the step's code: an operator's problem, not the business's `error` path.
        return [escalation(rs, CODE_CHANGED, f"{failure.error}; {FIX_CODE}")]
    policy = machine.state(rs.state).retry
    attempts = policy.attempts if policy else 1
    if policy is not None and failure.retryable and failure.attempt < attempts:
        delay = retry_delay(policy, failure.attempt, rng)
        due = iso(now + timedelta(seconds=delay))
        return [RetryScheduled(state=rs.state, attempt=failure.attempt + 1, due=due, delay_s=round(delay, 6))]
    move = _next_or_escalate(rs, machine, ERROR)
    if move is not None:
        return [move]
    reason = EXHAUSTED if failure.retryable else NON_RETRYABLE
    return [escalation(rs, reason, f"attempt {failure.attempt} of {attempts} failed: "
                                   f"{failure.error_type}: {failure.error}")]
