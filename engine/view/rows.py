"""The dashboard's status rows, kept between page views: with thousands of runs, reading
and folding every journal for every refresh of every open page would keep the server busy
for pages nobody reads faster.

A row is built by `engine.supervise.status.status_rows` (exactly `ratchet status`'s),
and built again only when it may have changed: its journal grew (`mark`, fed by the
store's `changes`), it is new, or it holds facts that move without a journal record — a
wait or retry past its deadline (how overdue), a run that should be moving (held or
stalled), a journal being created or damaged; a parent, when a child's row is built again
(its row shows the escalated ones). Every row is built again once a minute
anyway, for what only the present tells and no record announces (`code_changed`: a
module edited on disk). The messages queued for each run (`queued`) are looked up at every
`rows`, once for all runs (engine.supervise.queued), and set on the kept rows: a message
sent or filed changes no journal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime

from engine.home import Home
from engine.run.clock import iso
from engine.run.status import RunStatus
from engine.supervise.queued import queued_index, shown_for
from engine.supervise.status import JournalStatus, StatusRow, status_rows

_ALWAYS = {RunStatus.RUNNING, JournalStatus.STARTING, JournalStatus.DAMAGED}
FULL_EVERY = 60.0  # seconds between two rebuilds of every row


class RowCache:
    """Every run's row, rebuilt only where something may have changed (thread-safe)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._rows: dict[str, StatusRow] = {}
        self._changed: set[str] = set()
        self._lock = threading.Lock()
        self._full_at = 0.0  # monotonic time of the last rebuild of every row
        self._answered: dict[str, frozenset[str]] = {}  # run with messages queued -> the keys its journal answered
        self._had_queued: set[str] = set()  # runs with messages queued at the last look

    def mark(self, run_ids: Iterable[str]) -> None:
        """These runs' journals changed: their rows are built again at the next `rows`."""
        with self._lock:
            self._changed.update(run_ids)

    def rows(self, now: datetime) -> list[StatusRow]:
        """One row per run in the store now, in id order, as of `now`."""
        with self._lock:
            changed, self._changed = self._changed, set()
            ids = self.home.store.run_ids()
            moment = iso(now)
            if time.monotonic() - self._full_at > FULL_EVERY:
                self._full_at, self._rows = time.monotonic(), {}
            stale = [run_id for run_id in ids
                     if run_id in changed or run_id not in self._rows or _moves(self._rows[run_id], moment)]
            queued, answered = queued_index(self.home), dict[str, frozenset[str]]()
            built = status_rows(self.home, stale, now=now, queued=queued, answered=answered)
            # A parent's row shows its escalated children, which no record of its own announces.
            known = set(ids).difference(stale)
            parents = sorted({row.parent for row in built if row.parent in known})
            if parents:
                built += status_rows(self.home, parents, now=now, queued=queued, answered=answered)
            for row in built:
                self._rows[row.run_id] = row
            self._rows = {run_id: self._rows[run_id] for run_id in ids}  # archived ones leave
            # Messages come and go without a journal record: set them on the kept rows too (only
            # rows that have some, or had some at the last look: a few, among thousands).
            self._answered.update(answered)
            for run_id in self._had_queued.union(queued).intersection(self._rows):
                self._rows[run_id].queued = shown_for(queued, run_id, self._answered.get(run_id, frozenset()), now)
            self._had_queued = set(queued)
            self._answered = {run_id: keys for run_id, keys in self._answered.items() if run_id in queued}
            return list(self._rows.values())


def _moves(row: StatusRow, now: str) -> bool:
    """Can the row be different now although its journal is not? (Times are `iso` text: they sort.)"""
    if row.status in _ALWAYS or row.owes is not None:
        return True
    return row.status in (RunStatus.WAITING, RunStatus.RETRYING) and row.deadline is not None and row.deadline <= now
