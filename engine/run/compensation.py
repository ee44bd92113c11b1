"""A cancelled run's compensation: call its `on_cancel` once, and say what happened.

`on_cancel` (the state's, else the machine's) releases what the run held or tells
someone it stopped. It is called after `cancelled` is durable, between a
`compensation_started` (durable before the call) and a `compensation_finished`, always
with the idempotency key f"{run_id}/cancel": a crash between the two records makes the
next advance call it again with that key; after `compensation_finished` it is never
called again.

A failing on_cancel is not retried and does not undo the cancel: the run stays
cancelled (as a cancelled Temporal workflow or an aborted Step Functions execution
does). The failure is journaled in `compensation_finished`, logged, and reported to the
state's (else the machine's) `on_escalate` notifier with the reason "on_cancel failed"
and the key f"{run_id}/cancel/notify" — at least once, like every notification — so a
person hears of a hold that may still be in place.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable

from engine.faults import crash_point
from engine.run.clock import Clock, iso
from engine.run.context import StepContext
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from journal import CompensationFinished, CompensationStarted

log = logging.getLogger(__name__)

FAILED = "on_cancel failed"  # the reason an on_escalate notifier gets
ABANDONED = "Abandoned"  # the error_type of a compensation given up after repeated cut-offs


def compensate(rs: RunState, machine: RunnableMachine, started: CompensationStarted,
               clock: Clock, heartbeat: Callable[[], None] | None = None) -> CompensationFinished:
    """Call on_cancel for `started` (already durable); its outcome record, not yet journaled.
    `heartbeat` is the worker's: an on_cancel that calls `ctx.heartbeat()` is alive."""
    ctx = StepContext(run_id=rs.run_id, machine=rs.machine, state=rs.state, attempt=started.attempt,
                      idempotency_key=started.idempotency_key, input=copy.deepcopy(rs.input),
                      data=copy.deepcopy(rs.data), _heartbeat=heartbeat)
    crash_point("before_compensation")
    began = time.perf_counter()
    try:
        machine.resolve(started.action)(ctx)
    except Exception as exc:  # user code (or code that changed under the run): an outcome, not a crash
        crash_point("after_compensation")
        error = str(exc) or repr(exc)
        log.warning("run %s: on_cancel %s failed: %s: %s; the run stays cancelled",
                    rs.run_id, started.action, type(exc).__name__, error)
        notify_failure(rs, machine, started.action, started.seq, f"{type(exc).__name__}: {error}")
        return CompensationFinished(action=started.action, attempt=started.attempt, error=error,
                                    error_type=type(exc).__name__, duration_ms=_ms(began), ts=iso(clock.now()))
    crash_point("after_compensation")
    return CompensationFinished(action=started.action, attempt=started.attempt, duration_ms=_ms(began),
                                ts=iso(clock.now()))


def notify_failure(rs: RunState, machine: RunnableMachine, action: str, seq: int, error: str) -> None:
    """Tell on_escalate (if any) that the compensation failed or was given up (record `seq`):
    a hold may still be in place. A broken notifier is only logged."""
    try:
        target = machine.on_escalate(rs.state)
    except KeyError:
        target = None
    if not target:
        return
    ctx = StepContext(run_id=rs.run_id, machine=rs.machine, state=rs.state, attempt=1,
                      idempotency_key=f"{rs.run_id}/cancel/notify", input=copy.deepcopy(rs.input),
                      data=copy.deepcopy(rs.data),
                      escalation={"reason": FAILED, "detail": f"{action}: {error}", "seq": seq})
    try:
        machine.resolve(target)(ctx)
    except Exception as exc:  # best effort, as for escalations: never breaks the run
        log.warning("run %s: on_escalate %s failed: %s", rs.run_id, target, exc)


def _ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 3)
