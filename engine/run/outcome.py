"""Call the action of a step just started, and turn what happened into its outcome record.

An action returns None (fire `ok`), a trigger name, a dict of data (merged, fire `ok`) or
`Fire(trigger, data)`; it may also raise. Whatever it does becomes one record, not yet
journaled: `step_succeeded`, or `step_failed` saying whether a retry could help and
where the exception was raised (its `file:line` and a bounded traceback). An action
whose import path no longer resolves (the code changed under the run) fails as an
ImportPathError, never retried: engine.run.plan escalates it as "code changed". The
crash points around the call let fault tests kill the process on either side of it.
"""

from __future__ import annotations

import copy
import sysconfig
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgspec

from engine.definition.reserved import OK
from engine.errors import ImportPathError
from engine.faults import crash_point
from engine.run.clock import Clock, iso
from engine.run.context import Fire, StepContext
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from journal import Record, StepFailed, StepStarted, StepSucceeded

TRACEBACK_FRAMES = 8  # the innermost frames: where the error is, not how the engine got there
TRACEBACK_BYTES = 4096  # a journal line stays small even for a deep or chatty exception
# Where Python and installed packages live: an error raised in there is placed at the
# last frame of the user's own code that called into them.
_LIBRARIES = tuple(sorted({sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}))


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
        return failure(started, machine, exc, _ms(began), iso(clock.now()))
    crash_point("after_action")
    return outcome(started, result, _ms(began), iso(clock.now()))


def failure(started: StepStarted, machine: RunnableMachine, exc: Exception, ms: float, ts: str) -> StepFailed:
    """The record of an action that raised `exc` (or whose code no longer resolves)."""
    error_type, error = type(exc).__name__, str(exc) or repr(exc)
    if isinstance(exc, ImportPathError):  # nothing ran: the error names the path, no traceback needed
        return StepFailed(state=started.state, attempt=started.attempt, error=error, error_type=error_type,
                          retryable=False, duration_ms=ms, ts=ts)
    try:
        retryable = machine.retryable(started.state, exc)
    except ImportPathError as code:  # a `non_retryable` class that no longer imports
        retryable, error_type = False, ImportPathError.__name__
        error = f"{code} (deciding whether {type(exc).__name__}: {error} may be retried)"
    where, trace = place(exc)
    return StepFailed(state=started.state, attempt=started.attempt, error=error, error_type=error_type,
                      retryable=retryable, duration_ms=ms, ts=ts, where=where, traceback=trace)


def place(exc: BaseException) -> tuple[str, str]:
    """(`file:line` where `exc` was raised, its traceback's last frames within TRACEBACK_BYTES).

    The place is the innermost frame outside the standard library and installed
    packages (the user's line that called `json.loads`, not the decoder's), or the
    innermost frame if every frame is in there."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # not call_step's own frame
    frames = traceback.extract_tb(tb) if tb else []
    own = [f for f in frames if not f.filename.startswith(_LIBRARIES)] or frames
    where = f"{own[-1].filename}:{own[-1].lineno}" if own else ""
    text = "".join(traceback.format_exception(type(exc), exc, tb, limit=-TRACEBACK_FRAMES)).rstrip("\n")
    data = text.encode("utf-8", "replace")
    if len(data) > TRACEBACK_BYTES:
        # Keep the end: the innermost frames and the error itself are what locate it.
        tail = data[-(TRACEBACK_BYTES - 32):].decode("utf-8", "ignore")
        text = "… (earlier lines cut)\n" + tail[tail.find("\n") + 1:]
    return where, text


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
