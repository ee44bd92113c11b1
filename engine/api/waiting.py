"""Block until a run gets somewhere: `Ratchet.wait`, on the store's change hints.

The store's `watch` (inotify for files) wakes the waiter when the run's journal changes;
the waiter then reads only the new records (its cursor) and folds them in, so a wait
costs nothing while nothing happens, however long the journal. Hints may be lost
(`Store.watch` says so): the waiter also looks again every RECHECK seconds, a fallback,
not a busy poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from engine.errors import UnknownRunError, WaitTimeoutError
from engine.home import Home
from engine.run.replay import RunState
from engine.run.status import RunStatus
from journal import Cursor, JournalNotFoundError, JournalReplacedError

RECHECK = 1.0  # seconds: the longest a lost hint can delay a wait's answer
SETTLED = frozenset({RunStatus.WAITING, RunStatus.ESCALATED, RunStatus.FINISHED, RunStatus.CANCELLED})
WORDS = {"settled": SETTLED, "ended": frozenset({RunStatus.FINISHED, RunStatus.CANCELLED}),
         **{str(s): frozenset({s}) for s in RunStatus}}


def statuses(until: str | Collection[str]) -> frozenset[RunStatus]:
    """The statuses `until` names: RunStatus words, "ended" (finished or cancelled) or
    "settled" (waiting for someone, escalated or ended). ValueError for another word."""
    words = [until] if isinstance(until, str) else list(until)
    unknown = [w for w in words if w not in WORDS]
    if unknown or not words:
        raise ValueError(f"until={until!r}: use one or more of {', '.join(WORDS)}")
    return frozenset().union(*(WORDS[w] for w in words))


def reached(until: str | Collection[str]) -> Callable[[RunState], bool]:
    """Does a run's state answer `until`? A parent that only waits for its own children is
    not "settled" (nobody outside is asked; its join will move it), unless "waiting" is
    named. ValueError for an unknown word, as `statuses`."""
    wanted = statuses(until)
    words = [until] if isinstance(until, str) else list(until)
    if "settled" not in words or RunStatus.WAITING in words:
        return lambda rs: rs.status in wanted
    return lambda rs: rs.status in wanted and not waits_for_children(rs)


def waits_for_children(rs: RunState) -> bool:
    brood = rs.brood
    return rs.status == RunStatus.WAITING and brood is not None and brood.state == rs.state


def wait_until(home: Home, run_id: str, reached: Callable[[RunState], bool], *, until: str,
               timeout: float | None, after: int = 0) -> RunState:
    """The run's state once it has a record after seq `after` and `reached(state)` holds.

    WaitTimeoutError after `timeout` seconds (None: no limit); UnknownRunError for a run
    the store does not hold (an archived run has ended: it is read from the archive).
    """
    store = home.store
    if not store.exists(run_id) and run_id not in store.archived_ids():
        raise UnknownRunError(run_id, store.location)  # before watching: a watch may create the runs' folder
    changed = threading.Event()
    watch = store.watch(lambda rid: changed.set() if rid == run_id else None)
    try:
        limit = None if timeout is None else time.monotonic() + timeout
        state, cursor = RunState(), None
        while True:
            changed.clear()  # before reading: a change during the read sets it again
            state, cursor = _catch_up(home, run_id, state, cursor)
            if state.last_seq > after and reached(state):
                return state
            left = None if limit is None else limit - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeoutError(run_id, until, timeout or 0.0, str(state.status), state.state)
            changed.wait(RECHECK if left is None else min(RECHECK, left))
    finally:
        watch.stop()


def _catch_up(home: Home, run_id: str, state: RunState, cursor: Cursor | None) -> tuple[RunState, Cursor | None]:
    """Fold the records after `cursor` into `state` (a journal replaced since: fold it anew;
    an archived one: fold the archive)."""
    store = home.store
    try:
        chunk = store.read(run_id, after=cursor)
    except JournalReplacedError:
        state, chunk = RunState(), store.read(run_id)
    except JournalNotFoundError:
        if run_id not in store.archived_ids():
            raise UnknownRunError(run_id, store.location) from None
        archived = RunState()
        for _, record in store.archived_lines(run_id):
            archived.apply(record)
        return archived, None
    for record in chunk.records:
        state.apply(record)
    return state, chunk.cursor
