"""The run table: every run as the supervisor knows it, folded from its journal.

Each run's `RunState` is folded incrementally: its store cursor says where its journal
was read to, so a change costs only the new records. All of the supervisor's journal
reads are here, behind two methods: `scan` (the store's `changes`: which journals are
new or grew) and `refresh` (fold one run's records after its cursor). A journal that
cannot be read or folded marks its run damaged (`Tracked.broken`): logged once, left alone, the other runs go on.

The table does not decide what a run needs; it notes which runs got new records
(`take_changed`), and the supervisor's loop looks at those.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.home import Home
from engine.run.replay import RunState
from journal import Cursor, InvalidRunIdError, JournalError, JournalNotFoundError
from journal.reader import gc_paused

if TYPE_CHECKING:  # only with --metrics-port (prometheus-client is an extra)
    from engine.supervise.metrics import Metrics

log = logging.getLogger("ratchet.supervisor")


@dataclass(slots=True)  # one per run the supervisor knows
class Tracked:
    """A run as the supervisor knows it: its folded state and where its journal was read to."""

    state: RunState
    cursor: Cursor | None = None  # None: nothing read yet
    broken: str = ""  # a corrupt journal: left alone, shown in the log

    @property
    def status(self) -> str:
        return "damaged" if self.broken else self.state.status


class RunTable:
    """The runs under one home, kept current from their journals."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._runs: dict[str, Tracked] = {}
        self._changed: dict[str, None] = {}  # runs with new records since take_changed (insertion-ordered)
        self._listed: Any = None  # the store's changes cursor: what `scan` saw last
        self.observer: Metrics | None = None  # sees every record read (the supervisor's metrics)

    def get(self, run_id: str) -> Tracked | None:
        return self._runs.get(run_id)

    def __getitem__(self, run_id: str) -> Tracked:
        """A run known to be in the table (KeyError otherwise)."""
        return self._runs[run_id]

    def __len__(self) -> int:
        return len(self._runs)

    def ids(self) -> list[str]:
        """Every run in the table."""
        return list(self._runs)

    def counts(self) -> dict[str, int]:
        """How many runs have each status ("damaged" for a broken journal)."""
        return dict(Counter(tracked.status for tracked in self._runs.values()))

    def take_changed(self) -> list[str]:
        """The runs that got new records since the last call (each once, oldest change first)."""
        changed, self._changed = list(self._changed), {}
        return changed

    def scan(self) -> None:
        """Fold every journal that is new or grew since the last scan.

        With the collector paused: at start-up the table grows by thousands of states,
        and each collection would walk all of them again (the scan ~15% slower).
        """
        changes = self.home.store.changes(self._listed)
        self._listed = changes.cursor
        with gc_paused():
            for run_id in changes.run_ids:
                self.refresh(run_id)

    def refresh(self, run_id: str) -> Tracked | None:
        """Read a journal's new bytes and fold them in; None for a run not (yet) started.

        A journal that cannot be read or folded (whatever the exception) marks its run
        broken: logged, left alone; the others go on.
        """
        store = self.home.store
        tracked = self._runs.get(run_id) or Tracked(RunState())
        if tracked.broken:
            return tracked
        state, chunk = tracked.state, None
        was = (state.status, state.state)
        try:
            chunk = store.read(run_id, after=tracked.cursor)
            state.extend(chunk.records)  # pinned definitions are shared (journal.records caches them)
        except JournalNotFoundError:
            return self._runs.get(run_id)
        except InvalidRunIdError:
            return None  # not a run id at all
        except Exception as exc:  # one bad journal must never take the supervisor down
            path = store.where(run_id)
            # The record that failed: the first one after those folded (their seqs follow).
            record = next((r for r in chunk.records if r.seq > state.last_seq), None) if chunk is not None else None
            where = f"{path}:{record.seq}" if record is not None else path
            if isinstance(exc, JournalError):
                tracked.broken = str(exc) if path in str(exc) else f"{where}: {exc}"
            else:
                tracked.broken = (f"{where}: cannot fold this record ({type(exc).__name__}: {exc}); "
                                  "run 'ratchet verify'")
            self._runs[run_id] = tracked
            log.error("%s; the run is left alone", tracked.broken)
            if self.observer is not None:
                self.observer.run_changed(run_id, None, (), broken=tracked.broken)
            return tracked
        tracked.cursor = chunk.cursor
        if not state.run_id:
            return None  # created, run_started not yet durable: look again on its next write
        self._runs[run_id] = tracked
        if chunk.records:
            _log_change(run_id, was, state)
            if self.observer is not None:
                self.observer.run_changed(run_id, state, chunk.records)
            self._changed[run_id] = None
        return tracked


def _log_change(run_id: str, was: tuple[str, str], state: RunState) -> None:
    """One line per run that stopped to wait for a person, or ended (what an operator follows)."""
    if (state.status, state.state) == was or not was[1]:
        return
    if state.status == "escalated" and state.escalation is not None:
        log.warning("run %s escalated in '%s': %s", run_id, state.state, state.escalation.reason)
    elif state.status == "waiting":
        log.info("run %s waits in '%s' for %s", run_id, state.state, "|".join(state.triggers) or "its children")
    elif state.ended:
        log.info("run %s %s in '%s'", run_id, state.status, state.state)
