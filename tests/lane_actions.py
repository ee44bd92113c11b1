"""Actions for the concurrent driver's tests (engine.run.concurrent): a ledger of calls that
lanes append to at once, and hooks that make lanes meet inside their actions.

`work` records (run, state, idempotency key, thread) and returns `{state: input n}`; it
raises `Refused` in the state named by the input's `fail_in` (the step's retries are
exhausted: the run escalates), and `Crash`, a BaseException that escapes the runner as a
crash would, in the state named by `die_in`. `MEET`, when set, is called at the start of
every action of the state `first` (a barrier, an event). `story` is what must match
between two ways of driving a run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

LOCK = threading.Lock()
CALLS: list[tuple[str, str, str, str]] = []  # (run_id, state, idempotency key, thread name)
MEET: Callable[[str], None] | None = None  # called with the run id in state `first`


class Refused(Exception):
    pass


class Crash(BaseException):
    pass


def reset() -> None:
    global MEET
    MEET = None
    with LOCK:
        CALLS.clear()


def work(ctx):
    if MEET is not None and ctx.state == "first":
        MEET(ctx.run_id)
    with LOCK:
        CALLS.append((ctx.run_id, ctx.state, ctx.idempotency_key, threading.current_thread().name))
    if ctx.input.get("fail_in") == ctx.state:
        raise Refused(f"{ctx.run_id}: refused in {ctx.state}")
    if ctx.input.get("die_in") == ctx.state:
        raise Crash(f"{ctx.run_id}: died in {ctx.state}")
    return {ctx.state: ctx.input["n"]}


def story(home: Any, run_id: str) -> tuple[list[str], tuple]:
    """What must match between two ways of driving a run: its record types in order, and
    where it stands (everything but times, hashes and signatures, which differ by home)."""
    from engine.run.replay import fold  # only the tests that compare runs need them
    from journal.records import record_type

    records = home.store.read(run_id).records
    rs = fold(records)
    reason = rs.escalation.reason if rs.escalation else None
    return [record_type(r) for r in records], (rs.status, rs.state, rs.data, reason, rs.outcome)
