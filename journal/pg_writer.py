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
refuses every later append. Appends of other runs of the same process that wait at the
same moment share that statement and its transaction, each with its own conditions and
its own outcome (journal.pg_group).
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType

import psycopg

from journal.errors import JournalWriteError
from journal.pg_group import GroupCommit, Outcome, Pending
from journal.records import Record, Sealed
from journal.seal import side_name as seal_name
from journal.store import Cursor
from journal.writer import chain

log = logging.getLogger("ratchet.journal")

Conn = psycopg.Connection[tuple[object, ...]]

RESENDS = 3  # an append whose batch was lost on another writer's connection, found not landed, goes again

# After a batch lost its connection: take the run's row under a new owner token (see PgWriter._settle).
SETTLE = "UPDATE ratchet_runs SET owner = %s WHERE run_id = %s AND owner = %s RETURNING last_seq, head"

RENEW = """
UPDATE ratchet_runs SET lease_until = now() + %(lease)s * interval '1 second'
 WHERE run_id = %(run_id)s AND owner = %(owner)s
"""


class PgWriter:
    """Appends to one run's rows while it owns the run (see the module's docstring)."""

    def __init__(self, *, run_id: str, conn: Conn, owner: str, created: bool, last_seq: int, head: str,
                 lease: float, group: GroupCommit, where: str, release: Callable[[PgWriter], None],
                 clock: Callable[[], str]) -> None:
        self.run_id, self.created, self.owner = run_id, created, owner
        self.last_seq, self.last_hash = last_seq, head
        self.conn = conn
        self.lock = threading.Lock()  # the connection is shared with the lease keeper's thread
        self._lease, self._group, self._where = lease, group, where
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
        """One transaction: all records durable (committed) when this returns, or none. Appends
        of other runs that wait at the same moment share the transaction (journal.pg_group)."""
        if self._broken or self.closed:
            why = self._broken or "it was closed"
            raise JournalWriteError(f"{self._where}: writer unusable ({why}); reopen the run")
        if not records:
            return records
        lines, seq, prev = chain(records, self.last_seq, self.last_hash, self._clock)
        seal = (seal_name(self.run_id), lines[-1] + b"\n") if keep_seal else None  # the side file: the seal's line
        with self.lock:
            for _ in range(RESENDS):
                pending = Pending(conn=self.conn, run_id=self.run_id, owner=self.owner, last_seq=self.last_seq,
                                  head=self.last_hash, seq=seq, prev=prev, lines=lines, seal=seal)
                try:
                    outcome: Outcome | None = self._group.commit(pending)
                except BaseException as interrupted:  # while leading: the connection's state is unknown
                    self._broken = f"interrupted mid-append ({type(interrupted).__name__})"
                    raise
                if outcome is Outcome.UNKNOWN and not pending.led:
                    outcome = self._settle(pending)  # another writer's connection failed: ask on ours
                if outcome is not None:
                    break
            else:
                outcome = Outcome.UNKNOWN
        if outcome is Outcome.LANDED:
            self.last_seq, self.last_hash = seq, prev
            return records
        if outcome is Outcome.LOST:
            self._broken = "it lost the run's ownership"
            raise JournalWriteError(f"{self._where}: run '{self.run_id}' is no longer owned by this writer "
                                    "(its lease expired and another writer took it over); nothing was "
                                    "appended; reopen the run")
        exc = pending.error
        self._broken = f"{type(exc).__name__}: {exc}".strip()
        raise JournalWriteError(f"{self._where}: append failed ({exc}); the run must be reopened "
                                "from the database") from exc

    def _settle(self, pending: Pending) -> Outcome | None:
        """The outcome of an append whose batch lost its connection (another writer's) mid-commit,
        asked on this writer's own connection: None if it did not land (send it again).

        The run's row is taken under a new owner token first: the lost batch, if its transaction
        still runs on the server, either committed before (the row shows its chain) or can no
        longer match the row (its owner condition fails). Nothing else changes hands."""
        owner = f"{self.owner.rsplit('/', 1)[0]}/{uuid.uuid4().hex[:8]}"
        try:
            row = self.conn.execute(SETTLE, [owner, self.run_id, self.owner]).fetchone()
        except psycopg.Error as exc:
            pending.error = exc
            return Outcome.UNKNOWN
        if row is None:  # taken over meanwhile: whether this append landed first, only a reopen can tell
            pending.error = RuntimeError(f"the connection of its batch was lost ({pending.error}), and the run "
                                         "was taken over meanwhile")
            return Outcome.UNKNOWN
        self.owner = owner
        if (row[0], row[1]) == (pending.seq, pending.prev):
            return Outcome.LANDED
        if (row[0], row[1]) == (pending.last_seq, pending.head):
            return None
        pending.error = RuntimeError(f"the run's row ends at record {row[0]}, not {pending.last_seq} nor {pending.seq}")
        return Outcome.UNKNOWN

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
