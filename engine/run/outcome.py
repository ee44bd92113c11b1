"""Call the action of a step just started, and turn what happened into its outcome record.

An action returns None (fire `ok`), a trigger name, a dict of data (merged, fire `ok`) or
`Fire(trigger, data)`; it may also raise. Whatever it does becomes one record, not yet
journaled: `step_succeeded`, or `step_failed` saying whether a retry could help. The
crash points around the call let fault tests kill the process on either side of it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import msgspec

from engine.definition.spec import OK
from engine.errors import ImportPathError
from engine.faults import crash_point
from engine.run.clock import Clock, iso
from engine.run.context import Fire, StepContext
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from journal import Record, StepFailed, StepStarted, StepSucceeded


def call_step(rs: RunState, machine: RunnableMachine, started: StepStarted, clock: Clock,
              heartbeat: Callable[[], None] | None = None) -> Record:
    """Call the action of the step `started` (already durable); its outcome record."""
    spec = machine.state(started.state)
    ctx = StepContext(run_id=rs.run_id, machine=rs.machine, state=started.state,
                      attempt=started.attempt, idempotency_key=started.idempotency_key,
                      input=copy.deepcopy(rs.input), data=copy.deepcopy(rs.data),
                      _heartbeat=heartbeat)
    crash_point("before_action")
    began = time.perf_counter()
    try:
        if spec.action is None:  # replay only starts steps in task states; a bug if not
            raise ValueError(f"state '{started.state}' has no action")
        result = machine.resolve(spec.action)(ctx)
    except Exception as exc:  # any failure of user code is an outcome to journal, not a crash
        crash_point("after_action")
        retryable = not isinstance(exc, ImportPathError) and machine.retryable(started.state, exc)
        return StepFailed(state=started.state, attempt=started.attempt, error=str(exc) or repr(exc),
                          error_type=type(exc).__name__, retryable=retryable,
                          duration_ms=_ms(began), ts=iso(clock.now()))
    crash_point("after_action")
    return outcome(started, result, _ms(began), iso(clock.now()))


def outcome(started: StepStarted, result: Any, ms: float, ts: str) -> Record:
    """The record for what an action returned (None, a trigger, a dict of data, or Fire)."""
    data: Any
    if result is None:
        trigger, data = OK, {}
    elif isinstance(result, str):
        trigger, data = result, {}
    elif isinstance(result, dict):
        trigger, data = OK, result
    elif isinstance(result, Fire):
        trigger, data = result.trigger, result.data or {}
    else:
        return _bad_result(started, f"returned a {type(result).__name__}; expected None, str, dict or Fire", ms, ts)
    try:
        # Round-trip through JSON so the live state equals what replay will read back.
        data = msgspec.json.decode(msgspec.json.encode(data))
    except (TypeError, msgspec.EncodeError) as exc:
        return _bad_result(started, f"returned data that is not JSON: {exc}", ms, ts)
    return StepSucceeded(state=started.state, attempt=started.attempt, trigger=trigger, data=data,
                         duration_ms=ms, ts=ts)


def _bad_result(started: StepStarted, error: str, ms: float, ts: str) -> StepFailed:
    # A wrong return type is a bug in the action: retrying would give the same answer.
    return StepFailed(state=started.state, attempt=started.attempt, error=error,
                      error_type="TypeError", retryable=False, duration_ms=ms, ts=ts)


def _ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 3)
