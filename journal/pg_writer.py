"""The single writer of one run in PostgreSQL: ownership, conditional appends, the lease.

Owning a run takes two things, on one connection that the writer keeps to itself:

- a session advisory lock on the run: PostgreSQL drops it the moment the writer's
  session ends (close, or the process killed: its socket closes), so another process may
  take the run at once, and `held` is a probe of `pg_locks`;
- a lease in the run's row (`owner`, `owner_pid`, `lease_until`), renewed by every append
  and by a background thread (`LeaseKeeper`) while the writer is open. A host that froze
  or lost the network keeps its session (and lock) on the server until TCP gives up; once
  its lease has expired, a new writer ends that session (`pg_terminate_backend` of the
  lock's holder, nothing else) and takes the run.

Every append is one statement, one transaction: update the run's row only if this writer
is still its owner AND the chain still ends where the writer thinks (`last_seq`, `head`),
then insert the lines (unique `(run_id, seq)`); watchers are notified just after it commits. A writer that lost
its ownership, even one that wakes up after a partition with its connection alive,
changes nothing: its append finds no row to update, inserts nothing, and the writer
refuses every later append.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType

import psycopg

from journal.errors import JournalWriteError
from journal.records import Record, Sealed
from journal.seal import KIND as SEALS
from journal.seal import side_name as seal_name
from journal.store import Cursor
from journal.writer import chain

log = logging.getLogger("ratchet.journal")

Conn = psycopg.Connection[tuple[object, ...]]

OWNED = """
WITH owned AS (
    UPDATE ratchet_runs
       SET last_seq = %s, head = %s, change = nextval('ratchet_change'),
           txid = pg_current_xact_id(), lease_until = now() + %s * interval '1 second'
     WHERE run_id = %s AND owner = %s AND last_seq = %s AND head = %s
 RETURNING run_id
)"""
LINES = """
INSERT INTO ratchet_records (run_id, seq, line)
SELECT owned.run_id, %s + t.n, t.line
  FROM owned, unnest(%s::bytea[]) WITH ORDINALITY AS t(line, n)
"""
APPEND = OWNED + LINES
# append_sealed: the seal ending the batch is also the run's side file (journal.seal).
APPEND_SEALED = OWNED + """,
kept AS (
    INSERT INTO ratchet_side_files (kind, name, data) SELECT %s, %s, %s FROM owned
        ON CONFLICT (kind, name) DO UPDATE SET data = excluded.data
)""" + LINES

# Sent after the append commits, in a transaction of its own: a NOTIFY inside the append's
# transaction holds a server-wide lock through that commit's fsync, so concurrent appends
# would commit one at a time (measured: 300 commits/s from 4 clients instead of 860-1,300).
# Pipelined behind the append's explicit COMMIT (BEGIN, append, COMMIT, hint, one Sync):
# one round trip for both; the hint runs only once the append's transaction committed (if
# it inserted nothing, the run being taken, the hint is spurious: harmless). A hint needs no
# durability (`changes` is the truth): its commit does not wait for the disk. A connection
# lost mid-pipeline is reported as a failed append even if the commit went through: the
# writer is then unusable, and the run is reopened from what the database holds.
HINT = "SELECT set_config('synchronous_commit', 'off', true), pg_notify(%s, %s)"

RENEW = """
UPDATE ratchet_runs SET lease_until = now() + %(lease)s * interval '1 second'
 WHERE run_id = %(run_id)s AND owner = %(owner)s
"""


class PgWriter:
    """Appends to one run's rows while it owns the run (see the module's docstring)."""

    def __init__(self, *, run_id: str, conn: Conn, owner: str, created: bool, last_seq: int, head: str,
                 lease: float, channel: str, where: str, release: Callable[[PgWriter], None],
                 clock: Callable[[], str]) -> None:
        self.run_id, self.created, self.owner = run_id, created, owner
        self.last_seq, self.last_hash = last_seq, head
        self.conn = conn
        self.lock = threading.Lock()  # the connection is shared with the lease keeper's thread
        self._lease, self._channel, self._where = lease, channel, where
        self._release, self._clock = release, clock
        self._broken: str | None = None
        self.closed = False

    @property
    def broken(self) -> str | None:
        """Why the writer refuses appends (None while it may append)."""
        return self._broken

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.last_seq, self.last_hash)

    def append(self, record: Record) -> Record:
        return self.append_many((record,))[0]

    def append_sealed(self, records: Sequence[Record]) -> Sequence[Record]:
        """`append_many` of a batch ending in a seal, which is also kept as the run's side file
        (journal.seal) in the same transaction: never ahead of the journal, never over a newer
        seal (only the owner appends), and no round trip of its own."""
        if not records or not isinstance(records[-1], Sealed):
            raise ValueError("append_sealed: the batch must end in a seal")
        return self.append_many(records, keep_seal=True)

    def append_many(self, records: Sequence[Record], *, keep_seal: bool = False) -> Sequence[Record]:
        """One transaction: all records durable (committed) when this returns, or none."""
        if self._broken or self.closed:
            why = self._broken or "it was closed"
            raise JournalWriteError(f"{self._where}: writer unusable ({why}); reopen the run")
        if not records:
            return records
        lines, seq, prev = chain(records, self.last_seq, self.last_hash, self._clock)
        params: list[object] = [seq, prev, self._lease, self.run_id, self.owner, self.last_seq, self.last_hash]
        query = APPEND
        if keep_seal:
            query = APPEND_SEALED
            params += [SEALS, seal_name(self.run_id), lines[-1] + b"\n"]  # the side file: the seal's line
        params += [self.last_seq, lines]
        with self.lock:
            try:
                with self.conn.pipeline():
                    self.conn.execute("BEGIN")
                    appended = self.conn.execute(query, params)
                    self.conn.execute("COMMIT")
                    self.conn.execute(HINT, [self._channel, self.run_id])
                inserted = appended.rowcount
            except psycopg.Error as exc:
                self._broken = f"{type(exc).__name__}: {exc}".strip()
                with contextlib.suppress(psycopg.Error):
                    self.conn.rollback()  # out of the failed BEGIN block (the writer is unusable anyway)
                raise JournalWriteError(f"{self._where}: append failed ({exc}); the run must be reopened "
                                        "from the database") from exc
        if inserted != len(lines):
            self._broken = "it lost the run's ownership"
            raise JournalWriteError(f"{self._where}: run '{self.run_id}' is no longer owned by this writer "
                                    "(its lease expired and another writer took it over); nothing was "
                                    "appended; reopen the run")
        self.last_seq, self.last_hash = seq, prev
        return records

    def renew(self) -> bool:
        """Extend the lease; False (and the writer refuses appends) if it was taken over."""
        if self.closed or self._broken:
            return False
        with self.lock:
            try:
                renewed = self.conn.execute(RENEW, {"lease": self._lease, "run_id": self.run_id,
                                                    "owner": self.owner}).rowcount == 1
            except psycopg.Error as exc:
                self._broken = f"renewing its lease failed: {exc}"
                return False
        if not renewed:
            self._broken = "it lost the run's ownership"
        return renewed

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self.lock:
            self._release(self)

    def __enter__(self) -> PgWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LeaseKeeper:
    """One daemon thread per store renewing the lease of each open writer, every third of
    the lease: a step that runs longer than the lease keeps its run."""

    def __init__(self, lease: float) -> None:
        self.interval = lease / 3
        self._writers: weakref.WeakSet[PgWriter] = weakref.WeakSet()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, writer: PgWriter) -> None:
        with self._guard:
            self._writers.add(writer)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="ratchet-lease", daemon=True)
                self._thread.start()

    def remove(self, writer: PgWriter) -> None:
        with self._guard:
            self._writers.discard(writer)

    def _loop(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.interval):
            with self._guard:
                writers = list(self._writers)
                if not writers:
                    self._thread = None
                    return
            for writer in writers:
                try:
                    if not writer.renew():
                        self.remove(writer)  # said once: a lost lease does not come back
                        if not writer.closed:
                            log.warning("run %s: lease lost (%s); its writer refuses appends", writer.run_id,
                                        writer.broken)
                except Exception:  # the thread must outlive one writer's trouble
                    log.exception("run %s: renewing the lease failed", writer.run_id)
