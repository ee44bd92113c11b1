"""Durable deadlines a store may keep for its runs, for supervisors to claim (a capability).

A store that several supervisors share (PostgreSQL) keeps one timer per run at rest with
a deadline, so that a due run is taken by exactly one supervisor; a store one supervisor
owns (files) keeps none: its `timers` is None and the supervisor's own agenda decides.
The timer only says when to look; the journal says whether the deadline still stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol


class Due(NamedTuple):
    """A claimed timer: the run, its deadline, and the journal's seq when it was set."""

    run_id: str
    due: datetime
    seq: int


class Timers(Protocol):
    """Per-run deadlines, set by the run's writer and claimed by supervisors."""

    lease: float  # seconds a claim lasts before another supervisor may take the timer

    def set(self, run_id: str, due: datetime, seq: int) -> None:
        """The run rests until `due` as of record `seq` (unless a newer timer says otherwise);
        clears any claim on it."""
        ...

    def clear(self, run_id: str, seq: int) -> None:
        """The run has no deadline as of record `seq`: drop a timer set at or before it."""
        ...

    def ensure(self, timers: Sequence[tuple[str, datetime, int]]) -> int:
        """Add timers for runs that have none (a crash lost them); existing ones stay."""
        ...

    def claim(self, now: datetime, owner: str, limit: int) -> list[Due]:
        """Take up to `limit` timers due at `now` that nobody holds a claim on, earliest first."""
        ...

    def release(self, owner: str) -> int:
        """Give up every claim of `owner`."""
        ...
