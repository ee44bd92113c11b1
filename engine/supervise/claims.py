"""Due deadlines claimed from a shared store, so that supervisors split them (PostgreSQL).

On a store with timers (journal.timers), a passed deadline in this supervisor's agenda is
only a reason to look: the run is advanced by the supervisor that *claims* its timer, one
indexed `FOR UPDATE SKIP LOCKED` statement that takes due timers nobody else holds, and
never more than this supervisor's free workers can take with twice its pool queued (so a
second supervisor takes the rest). Two supervisors never dispatch the same due run; a claim runs out after the store's
lease, so the claims of a supervisor that died are taken by another.

When it looks: when its agenda (fed by the journals it folds) saw a deadline pass, again
while its last claim came back full, and every `every` seconds anyway (claims that ran out,
timers of runs it has not folded yet). One indexed statement; no scan of the runs.

Each claimed timer is checked against the journal (the run folded to its latest record):
the deadline still stands, and the run is advanced (the Runner then sets or clears the
timer, which ends the claim); or the timer is stale, and is repaired here — set to the
run's later deadline, or cleared up to the seq read. A timer a crash lost (the run rests
with a deadline, no row) is found from the agenda: a deadline seen passing that no claim
brought within `every` seconds is checked in the journal and its timer added if missing;
at start-up every run at rest with a deadline gets its timer if it has none (`adopt`).

One more thing a shared store changes: a run that times out and escalates is seen escalated
by every supervisor while the one that escalated it still writes its ticket and calls its
on_escalate. The ticket's check (a crash between the two is repaired by an advance) waits
while another process holds the run, and is made once it lets go (`defer_ticket_check`),
so no supervisor sends an advance that would find the run locked.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from engine.faults import crash_point
from engine.run.clock import Clock
from engine.run.replay import RunState
from engine.supervise.runs import RunTable
from journal.errors import JournalError
from journal.timers import Due, Timers

log = logging.getLogger("ratchet.supervisor")

AT_REST = ("waiting", "retrying")  # the statuses whose deadline a timer keeps
HELD_RECHECK = 0.5  # seconds between two looks at a run another process holds (as LOCKED_BACKOFF)


def rests_until(state: RunState) -> datetime | None:
    """The deadline of a run at rest with one, else None."""
    return state.deadline if state.status in AT_REST else None


class Claims:
    """This supervisor's side of the store's timers: what to claim, and repairs."""

    def __init__(self, timers: Timers, clock: Clock, runs: RunTable, *, every: float,
                 held: Callable[[str], bool]) -> None:
        self.timers = timers
        self.held = held  # the store's probe: does any process own the run now?
        self.clock = clock
        self.runs = runs
        self.every = every
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.fired = 0  # claimed timers whose deadline the journal confirmed: runs advanced
        self._owed = True  # look now: at start-up, after a passed deadline, after a full claim
        self._next_look = 0.0  # time.monotonic() of the next look whatever happens
        self._seen: dict[str, tuple[datetime, float]] = {}  # passed deadline -> when seen, until claimed
        self._tickets: dict[str, tuple[int, float]] = {}  # escalated run held elsewhere -> (seq, next look)
        self._waited: set[str] = set()  # runs whose deferred ticket check was logged (until found free)

    def take(self, passed: list[tuple[str, datetime]], room: int) -> list[str]:
        """The runs to advance now: up to `room` due timers claimed, checked in the journal.
        `passed`: the deadlines the agenda saw pass since the last call."""
        mono = time.monotonic()
        for run_id, deadline in passed:
            self._seen.setdefault(run_id, (deadline, mono))
        self._owed = self._owed or bool(passed)
        periodic = mono >= self._next_look
        if periodic:
            self._next_look = mono + self.every
            self._restore_lost(mono)
        if room <= 0 or not (self._owed or periodic):
            return []
        claimed = self.timers.claim(self.clock.now(), self.owner, room)
        if claimed:
            crash_point("after_claim")  # a supervisor that dies holding claims (tests/integration/test_pg_deadlines.py)
        self._owed = len(claimed) >= room  # maybe more are due: look again when workers free up
        ready = []
        for due in claimed:
            self._seen.pop(due.run_id, None)
            if self._stands(due):
                ready.append(due.run_id)
        self.fired += len(ready)
        return ready

    def adopt(self) -> None:
        """At start-up, after the first fold: add the timers missing for runs at rest with a
        deadline (imported, rested under an older Ratchet, or lost to a crash while no
        supervisor ran), in one statement; existing timers stay as they are."""
        resting = []
        for run_id in self.runs.ids():
            tracked = self.runs[run_id]
            deadline = None if tracked.broken else rests_until(tracked.state)
            if deadline is not None:
                resting.append((run_id, deadline, tracked.state.last_seq))
        added = self.timers.ensure(resting)
        if added:
            log.info("added the missing timers of %d runs at rest with a deadline", added)

    def defer_ticket_check(self, run_id: str, seq: int) -> bool:
        """Should the ticket check of the run's escalation (at `seq`) wait? Yes while another
        process holds the run: it is then returned by `ticket_checks_due` a moment later."""
        if not self.held(run_id):
            self._waited.discard(run_id)
            return False
        if run_id not in self._waited:
            self._waited.add(run_id)
            log.debug("run %s: escalated by another process, which holds it; its ticket is looked at once it "
                      "lets go", run_id)
        self._tickets[run_id] = (seq, time.monotonic() + HELD_RECHECK)
        return True

    def ticket_checks_due(self) -> list[tuple[str, int]]:
        """The deferred ticket checks to make again now: (run, escalated seq)."""
        mono = time.monotonic()
        due = [(run_id, seq) for run_id, (seq, when) in self._tickets.items() if when <= mono]
        for run_id, _ in due:
            del self._tickets[run_id]
        return due

    def release(self) -> None:
        """Give up the claims not acted on (a stop): other supervisors may take them at once.
        A database that does not answer keeps them until they run out (the stop goes on)."""
        try:
            self.timers.release(self.owner)
        except JournalError as exc:
            log.warning("could not give back this supervisor's claims (%s); they run out by themselves", exc)

    def _stands(self, due: Due) -> bool:
        """Does the journal confirm the claimed deadline? If not, repair the timer from it.

        The run's fold (kept current by the appends' notifications) is asked first; the journal
        is read again only when it disagrees, before anything is repaired. A fold behind the
        journal costs at most an advance that finds nothing to do."""
        tracked = self.runs.get(due.run_id)
        if tracked is not None and not tracked.broken and rests_until(tracked.state) == due.due:
            return True
        tracked = self.runs.refresh(due.run_id)
        if tracked is None or tracked.broken:
            self.timers.clear(due.run_id, due.seq)  # gone (archived) or left alone as damaged
            return False
        state = tracked.state
        deadline = rests_until(state)
        if deadline == due.due:
            return True
        if deadline is not None:  # the row is behind the journal (a crash after an append)
            self.timers.set(due.run_id, deadline, state.last_seq)
        else:  # the run moved on: a stale row
            self.timers.clear(due.run_id, state.last_seq)
        log.debug("run %s: its timer (due %s, as of #%d) was stale; repaired", due.run_id, due.due, due.seq)
        return False

    def _restore_lost(self, mono: float) -> None:
        """Deadlines seen passing over `every` s ago that no claim brought: if the journal says
        the run still rests until then, add its timer (kept if another supervisor's is there)."""
        lost = []
        for run_id, (deadline, seen) in list(self._seen.items()):
            if mono - seen < self.every:
                continue
            del self._seen[run_id]
            tracked = self.runs.get(run_id)
            if tracked is None or tracked.broken or rests_until(tracked.state) != deadline:
                continue  # moved on (folded from its journal's changes): nothing was lost
            tracked = self.runs.refresh(run_id)
            if tracked is not None and not tracked.broken and rests_until(tracked.state) == deadline:
                lost.append((run_id, deadline, tracked.state.last_seq))
        added = self.timers.ensure(lost)
        if added:
            log.info("restored the timers of %d runs at rest past their deadline (a crash lost them)", added)
            self._owed = True
