"""What a record leaves owed (`RunState.todo`), for `engine.run.plan` to turn into records.

The runner writes "outcome + transition + next step_started" as one batch, and a crash may
leave any prefix of it; so after folding, the run may owe the rest. One small frozen class
per kind of work owed; `Todo` is their union, matched in `plan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from journal import StepFailed

# Why a trigger is taken: an action's result, a message from the inbox, a human's `skip`,
# or a wait's deadline.
Cause = Literal["step", "trigger", "resolution", "timeout"]


@dataclass(frozen=True, slots=True)
class Enter:
    """Start the current state: `step_started` (task), `waiting`, or `run_finished` (final)."""


@dataclass(frozen=True, slots=True)
class Step:
    """(Re)start the current task at `attempt` (once a scheduled retry is due)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Take:
    """Take the transition for `trigger` from the current state, or escalate."""

    trigger: str
    cause: Cause


@dataclass(frozen=True, slots=True)
class Failed:
    """A step failed: retry it, take the `error` transition, or escalate."""

    failure: StepFailed


@dataclass(frozen=True, slots=True)
class TimeoutDue:
    """A wait's deadline passed: take the `timeout` transition, or escalate."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Write `cancelled`: a human's `abort` resolution whose record is missing."""

    by: str


Todo = Enter | Step | Take | Failed | TimeoutDue | Cancel
