"""What a record leaves owed (`RunState.todo`), for `engine.run.plan` to turn into records.

The runner writes "outcome + transition + next step_started" as one batch, and a crash may
leave any prefix of it; so after folding, the run may owe the rest. One small frozen class
per kind of work owed; `Todo` is their union, matched in `plan`.

They are frozen msgspec Structs rather than frozen dataclasses (same use: fields, value
equality, `match`): replay makes one for most records it folds, and a Struct is made
about 7 times faster, which keeps replaying thousands of journals as fast as it was.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from journal import StepFailed
from journal.records import ChildRun

# Why a trigger is taken: an action's result, a message from the inbox, a human's `skip`,
# or a wait's deadline.
Cause = Literal["step", "trigger", "resolution", "timeout"]


class Enter(msgspec.Struct, frozen=True):
    """Start the current state: `step_started` (task), `waiting`, or `run_finished` (final)."""


class Step(msgspec.Struct, frozen=True):
    """(Re)start the current task at `attempt` (once a scheduled retry is due)."""

    attempt: int


class Take(msgspec.Struct, frozen=True):
    """Take the transition for `trigger` from the current state, or escalate."""

    trigger: str
    cause: Cause


class Failed(msgspec.Struct, frozen=True):
    """A step failed: retry it, take the `error` transition, or escalate."""

    failure: StepFailed


class TimeoutDue(msgspec.Struct, frozen=True):
    """A wait's deadline passed: take the `timeout` transition, or escalate."""


class Cancel(msgspec.Struct, frozen=True):
    """Write `cancelled`: a human's `abort` resolution whose record is missing."""

    by: str


class Compensate(msgspec.Struct, frozen=True):
    """Call a cancelled run's `on_cancel` (`action`), as its `attempt`-th call: after
    `cancelled`, or again after a crash cut a call off before its outcome was journaled."""

    action: str
    attempt: int


class CreateChildren(msgspec.Struct, frozen=True):
    """Create the child runs a `spawned` record lists (idempotent: the same ids again),
    then wait for the join (engine.run.spawn)."""

    children: list[ChildRun]


Todo = Enter | Step | Take | Failed | TimeoutDue | Cancel | Compensate | CreateChildren
