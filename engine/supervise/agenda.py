"""The agenda: when each run is next due, and which runs are held back for now.

Two kinds of dates, on two clocks:

- deadlines (a waiting state's timeout, a retry's due date) are business time, on the
  run's `Clock` (a `FileClock` in tests): a heap keyed on the date. A run has one current
  deadline; rescheduling it leaves the old heap entry behind, skipped when it comes up.
  On a store that supervisors share (PostgreSQL), a passed deadline only says when to
  look: the run is advanced by the supervisor that claims its timer (engine.supervise.claims).
- back-offs (a run whose job failed, made no progress, or found the run locked) are
  engine time, on `time.monotonic()`: one entry per run holding the date it is held back
  until and its consecutive failures, which double the next back-off (0.5 s, 1 s, 2 s,
  ... at most MAX_BACKOFF) until a job on it goes through (`progressed`).

The loop asks what is `due` now, whether a run is `held_back`, and how long it may sleep
(`next_wake`).
"""

from __future__ import annotations

import heapq
import time
from datetime import datetime
from typing import NamedTuple

from engine.run.clock import Clock

FIRST_BACKOFF = 0.5  # after a run's first failure; doubled per further consecutive failure
MAX_BACKOFF = 60.0  # a run whose advance keeps failing is retried at most this rarely


class BackOff(NamedTuple):
    until: float  # time.monotonic() before which no job is handed over for the run
    failures: int  # consecutive failed jobs of the run


class Agenda:
    """Deadlines on the clock and back-offs on the monotonic clock, per run."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._deadlines: list[tuple[datetime, str]] = []  # heap of (deadline, run); stale entries are skipped
        self._scheduled: dict[str, datetime] = {}  # run -> its current deadline (its live heap entry)
        self._back_offs: dict[str, BackOff] = {}

    # --- deadlines ---------------------------------------------------------------------------

    def schedule(self, run_id: str, deadline: datetime) -> None:
        """Make `deadline` the run's current deadline (the same one again changes nothing)."""
        if self._scheduled.get(run_id) != deadline:
            self._scheduled[run_id] = deadline
            heapq.heappush(self._deadlines, (deadline, run_id))

    def due(self) -> list[tuple[str, datetime]]:
        """Take the current deadlines that have passed: (run, its deadline), earliest first."""
        now, passed = self.clock.now(), []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, run_id = heapq.heappop(self._deadlines)
            if self._scheduled.get(run_id) != deadline:
                continue  # superseded by a later record
            del self._scheduled[run_id]
            passed.append((run_id, deadline))
        return passed

    def deadline_passed(self) -> bool:
        """Is the earliest deadline in the heap (maybe a superseded one) already past?"""
        return bool(self._deadlines) and self._deadlines[0][0] <= self.clock.now()

    # --- back-offs ---------------------------------------------------------------------------

    def back_off(self, run_id: str, seconds: float | None = None) -> float:
        """Hold the run back for `seconds`, or (None) count a failure and back off for it.

        Returns the delay chosen.
        """
        failures = self._back_offs[run_id].failures if run_id in self._back_offs else 0
        if seconds is None:
            failures += 1
            seconds = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (failures - 1))
        self._back_offs[run_id] = BackOff(time.monotonic() + seconds, failures)
        return seconds

    def progressed(self, run_id: str) -> None:
        """A job on the run went through: no more back-off, and its failures are forgotten."""
        self._back_offs.pop(run_id, None)

    def held_back(self, run_id: str) -> bool:
        entry = self._back_offs.get(run_id)
        return entry is not None and entry.until > time.monotonic()

    # --- sleeping ----------------------------------------------------------------------------

    def next_wake(self) -> float | None:
        """Seconds until the earliest deadline or back-off end (0 if one is past); None if none."""
        waits = []
        if self._deadlines:
            waits.append(max(0.0, (self._deadlines[0][0] - self.clock.now()).total_seconds()))
        mono = time.monotonic()
        ends = [entry.until for entry in self._back_offs.values() if entry.until > mono]
        if ends:
            waits.append(min(ends) - mono)
        return min(waits) if waits else None
