"""The run table: every run as the supervisor knows it, folded from its journal.

Each run's `RunState` is folded incrementally: its `ReadPosition` says where its journal
was read to, so a change costs only the new bytes. All of the supervisor's journal reads
are here, behind two methods: `scan` (which journals are new or grew) and `refresh`
(fold one run's new records). A journal that cannot be read or folded marks its run
damaged (`Tracked.broken`): logged once, left alone, the other runs go on.

The table does not decide what a run needs; it notes which runs got new records
(`take_changed`), and the supervisor's loop looks at those.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from engine.home import Home
from engine.run.replay import RunState
from journal import JournalError, read

log = logging.getLogger("ratchet.supervisor")

JOURNAL_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class ReadPosition:
    """Where a journal was read to: what the next read continues from (and checks it continues)."""

    offset: int = 0  # byte just after the last complete line read
    last_seq: int = 0
    last_hash: str | None = None  # the chain hash of the last line read: the next one's `prev`


@dataclass
class Tracked:
    """A run as the supervisor knows it: its folded state and where its journal was read to."""

    state: RunState
    position: ReadPosition = field(default_factory=ReadPosition)
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

    def get(self, run_id: str) -> Tracked | None:
        return self._runs.get(run_id)

    def __len__(self) -> int:
        return len(self._runs)

    def counts(self) -> dict[str, int]:
        """How many runs have each status ("damaged" for a broken journal)."""
        return dict(Counter(tracked.status for tracked in self._runs.values()))

    def take_changed(self) -> list[str]:
        """The runs that got new records since the last call (each once, oldest change first)."""
        changed, self._changed = list(self._changed), {}
        return changed

    def scan(self) -> None:
        """Fold every journal that is new or grew since it was last read."""
        try:
            entries = list(os.scandir(self.home.runs))
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.name.endswith(JOURNAL_SUFFIX):
                continue
            run_id = entry.name[: -len(JOURNAL_SUFFIX)]
            tracked = self._runs.get(run_id)
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue
            if tracked is None or size > tracked.position.offset:
                self.refresh(run_id)

    def refresh(self, run_id: str) -> Tracked | None:
        """Read a journal's new bytes and fold them in; None for a run not (yet) started.

        A journal that cannot be read or folded (whatever the exception) marks its run
        broken: logged, left alone; the others go on.
        """
        try:
            path = self.home.store.path(run_id)
        except JournalError:
            return None
        tracked = self._runs.get(run_id) or Tracked(RunState())
        if tracked.broken:
            return tracked
        state, record, at = tracked.state, None, tracked.position
        was = (state.status, state.state)
        try:
            contents = read(path, offset=at.offset, last_seq=at.last_seq, last_hash=at.last_hash)
            for record in contents.records:
                state.apply(record)  # pinned definitions are shared (journal.records caches them)
        except FileNotFoundError:
            return self._runs.get(run_id)
        except Exception as exc:  # one bad journal must never take the supervisor down
            where = f"{path}:{record.seq}" if record is not None else str(path)
            if isinstance(exc, JournalError):
                tracked.broken = str(exc) if str(path) in str(exc) else f"{where}: {exc}"
            else:
                tracked.broken = f"{where}: cannot fold this record ({type(exc).__name__}: {exc}); run 'ratchet verify'"
            self._runs[run_id] = tracked
            log.error("%s; the run is left alone", tracked.broken)
            return tracked
        tracked.position = ReadPosition(contents.end_offset, contents.last_seq, contents.last_hash)
        if not state.run_id:
            return None  # created, run_started not yet durable: look again on its next write
        self._runs[run_id] = tracked
        if contents.records:
            _log_change(run_id, was, state)
            self._changed[run_id] = None
        return tracked


def _log_change(run_id: str, was: tuple[str, str], state: RunState) -> None:
    """One line per run that stopped to wait for a person, or ended (what an operator follows)."""
    if (state.status, state.state) == was or not was[1]:
        return
    if state.status == "escalated" and state.escalation is not None:
        log.warning("run %s escalated in '%s': %s", run_id, state.state, state.escalation.reason)
    elif state.status == "waiting":
        log.info("run %s waits in '%s' for %s", run_id, state.state, "|".join(state.triggers))
    elif state.ended:
        log.info("run %s %s in '%s'", run_id, state.status, state.state)
