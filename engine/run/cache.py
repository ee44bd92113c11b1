"""What one process remembers of runs between sessions: folded states and pinned machines.

A long run must not cost a full replay per event: the state folded when the process last
held a run is kept with the store cursor it was read to, and the next session folds only
the records added since (any doubt about the journal means a full fold). A run's pinned
definition is built into a machine once per process, keyed by its hash.
"""

from __future__ import annotations

from pathlib import Path

from engine.definition.machine import Machine, machine_from_pinned
from engine.run.replay import RunState, fold
from journal import Cursor, JournalError, Store, Writer

STATE_CACHE = 1024  # runs whose folded state a process keeps between sessions


class RunCache:
    """Folded states by run (with the cursor they were read to) and machines by definition."""

    def __init__(self, store: Store, *, size: int = STATE_CACHE) -> None:
        self.store = store
        self.size = size
        self._states: dict[str, tuple[Cursor, RunState]] = {}
        self._machines: dict[tuple[str, str | None], Machine] = {}

    def state(self, run_id: str, writer: Writer) -> RunState:
        """The run's state from its journal, which `writer` holds: from memory plus what was
        appended since this process last held the run, or folded in full."""
        seen = self._states.pop(run_id, None)
        if seen is not None:
            cursor, rs = seen
            now = writer.cursor
            if cursor == now:
                return rs
            try:  # raises if the journal is not the one read before (replaced, cut, edited)
                grown = self.store.read(run_id, after=cursor)
            except JournalError:
                grown = None
            if grown is not None and grown.cursor == now:
                for record in grown.records:
                    rs.apply(record)
                return rs
        rs = fold(self.store.read(run_id).records)
        if rs.last_seq != writer.last_seq:
            # A database store's writer starts from the run's row, not its last line: rows deleted
            # under it would have the next record chained across the hole. Leave the run alone.
            raise JournalError(f"{self.store.where(run_id)}: the journal ends at record {rs.last_seq}, but its "
                               f"writer holds it at record {writer.last_seq}: records were cut off its end; "
                               "run 'ratchet verify'")
        return rs

    def remember(self, run_id: str, writer: Writer, rs: RunState) -> None:
        """Keep `rs`, all of which is on disk up to `writer`'s cursor, for the next session."""
        if len(self._states) >= self.size:
            self._states.pop(next(iter(self._states)))  # the run held longest ago
        self._states[run_id] = (writer.cursor, rs)

    def machine(self, rs: RunState) -> Machine:
        """The run's pinned definition (never the file as it is now), built once per process.

        Its code is resolved when first needed, not here: code that changed under the run
        since it started must escalate it ("code changed", engine.run.plan), never make it
        impossible to open (a run that cannot be opened cannot even be aborted)."""
        key = (rs.definition_hash, rs.source)
        if key not in self._machines:
            base_dir = Path(rs.source).parent if rs.source else None
            self._machines[key] = machine_from_pinned(rs.definition, base_dir)
        return self._machines[key]

    def pin(self, machine: Machine, source: str | None) -> Machine:
        """Remember a machine a run was just upgraded to; returns it."""
        self._machines[(machine.hash, source)] = machine
        return machine
