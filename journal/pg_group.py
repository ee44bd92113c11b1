"""Group commit across runs: the appends that wait at the same moment in one process go to
the server together, as one statement in one transaction, with one COMMIT.

Each append keeps its own conditions, checked row by row in that statement (APPEND, the
same conditions, when an append goes alone): its run's row
is updated only if this writer still owns the run and the chain still ends where the writer
thinks (`owner`, `last_seq`, `head`), and only the lines of the runs so updated are inserted
(unique `(run_id, seq)`). So one writer that lost its run appends nothing while the others
land, and each is told its own outcome. The notification hints of the batch follow its
COMMIT in the same round trip, in a transaction of their own (HINTS).

Leader and followers: an append that finds no batch in flight leads at once (a lone append
never waits for company) and commits on its own writer's connection; appends that come
while a batch is in flight queue, and when it ends the first of them leads the next batch
with everything queued. The leader's connection is the only one a batch uses; each
writer's ownership stays on its own connection (its advisory lock, its lease).

What each failure leaves (each writer's `last_seq`/`head` moves only on LANDED):

- a statement error with the connection intact (none is expected: a unique violation
  would mean rows beyond a run's `last_seq`): rolled back, then each append of the batch
  is sent again alone, so only the one at fault fails;
- the leader's connection lost mid-batch (the server gone, or the leader's session ended by
  a taker of the leader's own run): the commit may or may not have happened. The leader's
  own append is UNKNOWN (its writer refuses appends; the run is reopened from the
  database). Each follower is UNKNOWN too, and finds out on its own connection
  (journal.pg_writer, `PgWriter._settle`) whether its lines landed;
- kill -9 of the process: the transaction commits whole or not at all; every run is
  reopened from what the database holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from enum import Enum

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]

# One append alone (the common case of a process that drives one run at a time): the same
# conditions with plain parameters, which the server runs in a third of the batch's time; its
# lines come as one bytea cut by offsets, as in BATCH (below).
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
SELECT owned.run_id, %s + t.n, substring(%s::bytea FROM t.start FOR t.len)
  FROM owned, unnest(%s::int[], %s::int[]) WITH ORDINALITY AS t(start, len, n)
"""
APPEND = OWNED + LINES
# An append that ends in a seal also keeps the seal as the run's side file (journal.seal).
APPEND_SEALED = OWNED + """,
kept AS (
    INSERT INTO ratchet_side_files (kind, name, data) SELECT %s, %s, %s FROM owned
        ON CONFLICT (kind, name) DO UPDATE SET data = excluded.data
)""" + LINES

# Several appends. Its arrays come as PostgreSQL array literals (text), one element per append
# (b.*), per line (l.*) or per kept seal (s.*), and the lines and seals as one bytea cut by
# offsets: psycopg adapts a Python list element by element in Python (~150 µs of client CPU
# for a batch of five, measured), a string or bytes at once.
BATCH = """
WITH owned AS (
    UPDATE ratchet_runs AS r
       SET last_seq = b.new_seq, head = b.new_head, change = nextval('ratchet_change'),
           txid = pg_current_xact_id(), lease_until = now() + %(lease)s * interval '1 second'
      FROM unnest(%(runs)s::text[], %(owners)s::text[], %(seqs)s::bigint[], %(heads)s::text[],
                  %(new_seqs)s::bigint[], %(new_heads)s::text[]) AS b(run_id, owner, last_seq, head, new_seq, new_head)
     WHERE r.run_id = b.run_id AND r.owner = b.owner AND r.last_seq = b.last_seq AND r.head = b.head
 RETURNING r.run_id
),
kept AS (
    INSERT INTO ratchet_side_files (kind, name, data)
    SELECT %(kind)s, s.name, substring(%(blob)s::bytea FROM s.start FOR s.len)
      FROM unnest(%(seal_runs)s::text[], %(seal_names)s::text[], %(seal_starts)s::int[], %(seal_lens)s::int[])
           AS s(run_id, name, start, len)
      JOIN owned USING (run_id)
        ON CONFLICT (kind, name) DO UPDATE SET data = excluded.data
),
lines AS (
    INSERT INTO ratchet_records (run_id, seq, line)
    SELECT l.run_id, l.seq, substring(%(blob)s::bytea FROM l.start FOR l.len)
      FROM unnest(%(line_runs)s::text[], %(line_seqs)s::bigint[], %(line_starts)s::int[], %(line_lens)s::int[])
           AS l(run_id, seq, start, len)
      JOIN owned USING (run_id)
 RETURNING run_id
)
SELECT run_id, count(*) FROM lines GROUP BY run_id
"""

# One hint per run of the batch (spurious for an append that did not land: harmless), sent
# after the batch commits, in a transaction of its own: a NOTIFY inside the append's
# transaction holds a server-wide lock through that commit's fsync, so concurrent appends
# would commit one at a time (measured: 300 commits/s from 4 clients instead of 860-1,300).
# Pipelined behind the batch's explicit COMMIT (BEGIN, batch, COMMIT, hints, one Sync): one
# round trip for all; the hints run only once the batch committed. A hint needs no
# durability (`changes` is the truth): its commit does not wait for the disk.
HINTS = "SELECT set_config('synchronous_commit', 'off', true), pg_notify(%s, r) FROM unnest(%s::text[]) AS r"


class Outcome(Enum):
    LANDED = "landed"  # committed: every line of it, and its seal if it had one
    LOST = "lost"  # the run's row no longer matched (another owner, or the chain moved): nothing of it
    FAILED = "failed"  # the statement failed for this append alone: nothing of it
    UNKNOWN = "unknown"  # the batch's connection was lost: committed or not, the server knows


class Pending:
    """One writer's append waiting for its batch: what it expects, what it adds, its outcome."""

    __slots__ = ("conn", "run_id", "owner", "last_seq", "head", "seq", "prev", "lines", "seal",
                 "outcome", "error", "led", "_wake", "_lead")

    def __init__(self, *, conn: Conn, run_id: str, owner: str, last_seq: int, head: str, seq: int, prev: str,
                 lines: Sequence[bytes], seal: tuple[str, bytes] | None) -> None:
        self.conn, self.run_id, self.owner = conn, run_id, owner
        self.last_seq, self.head, self.seq, self.prev = last_seq, head, seq, prev
        self.lines, self.seal = lines, seal
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.led = False  # its batch ran on this append's own connection
        self._wake = threading.Event()
        self._lead = False

    def settle(self, outcome: Outcome, error: BaseException | None = None) -> None:
        self.outcome, self.error = outcome, error
        self._wake.set()


class GroupCommit:
    """The appends of one process's writers on one store, committed in batches (see the module)."""

    def __init__(self, *, channel: str, lease: float, seal_kind: str) -> None:
        self._channel, self._lease, self._seal_kind = channel, lease, seal_kind
        self._mutex = threading.Lock()
        self._queue: list[Pending] = []
        self._leading = False
        self.batches = 0  # batches sent, and appends in them: how much was grouped
        self.appends = 0

    @property
    def queued(self) -> int:
        """Appends waiting for the batch in flight to end."""
        with self._mutex:
            return len(self._queue)

    def commit(self, pending: Pending) -> Outcome:
        """Append `pending` with whatever else waits now; returns its outcome (also in `pending`)."""
        with self._mutex:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = True
        if not lead:
            pending._wake.wait()
            if not pending._lead:
                return pending.outcome  # type: ignore[return-value]  # settled by a leader
        self._lead_batch(pending)
        return pending.outcome  # type: ignore[return-value]

    def _lead_batch(self, leader: Pending) -> None:
        with self._mutex:
            batch, self._queue = self._take(self._queue)
        try:
            self._send(leader.conn, batch)
        finally:
            for pending in batch:  # never leave a follower waiting, whatever escaped
                if pending.outcome is None:
                    pending.settle(Outcome.UNKNOWN, RuntimeError("the batch's leader stopped"))
            with self._mutex:
                if self._queue:
                    self._queue[0]._lead = True  # the first to come leads what queued meanwhile
                    self._queue[0]._wake.set()
                else:
                    self._leading = False

    @staticmethod
    def _take(queue: list[Pending]) -> tuple[list[Pending], list[Pending]]:
        """The batch (at most one append per run: a second one waits for the next) and the rest."""
        batch: list[Pending] = []
        rest: list[Pending] = []
        runs: set[str] = set()
        for pending in queue:
            (rest if pending.run_id in runs else batch).append(pending)
            runs.add(pending.run_id)
        return batch, rest

    def _send(self, conn: Conn, batch: list[Pending]) -> None:
        batch.sort(key=lambda p: p.run_id)  # rows locked in one order by every batch
        for pending in batch:
            pending.led = pending.conn is conn
        self.batches += 1
        self.appends += len(batch)
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                if len(batch) == 1:
                    appended = conn.execute(*self._alone(batch[0]))
                else:
                    appended = conn.execute(BATCH, self._params(batch))
                conn.execute("COMMIT")
                conn.execute(HINTS, [self._channel, texts(p.run_id for p in batch)])
            if len(batch) == 1:
                inserted = {batch[0].run_id: appended.rowcount}
            else:
                inserted = {str(run): int(count) for run, count in appended.fetchall()}  # type: ignore[call-overload]
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                for pending in batch:
                    pending.settle(Outcome.UNKNOWN, exc)
                return
            try:
                conn.rollback()  # out of the failed BEGIN block
            except psycopg.Error:
                for pending in batch:
                    pending.settle(Outcome.UNKNOWN, exc)
                return
            if len(batch) == 1:
                batch[0].settle(Outcome.FAILED, exc)
                return
            for pending in batch:  # find the one at fault: each alone
                self._send(conn, [pending])
            return
        for pending in batch:
            count = inserted.get(pending.run_id, 0)
            if count == len(pending.lines):
                pending.settle(Outcome.LANDED)
            elif count == 0:
                pending.settle(Outcome.LOST)
            else:  # cannot be: a run's lines go in whole or not at all
                pending.settle(Outcome.FAILED, RuntimeError(f"{count} of {len(pending.lines)} lines inserted"))

    def _alone(self, p: Pending) -> tuple[str, list[object]]:
        """APPEND's (or APPEND_SEALED's) statement and parameters for one append."""
        params: list[object] = [p.seq, p.prev, self._lease, p.run_id, p.owner, p.last_seq, p.head]
        if p.seal is not None:
            params += [self._seal_kind, p.seal[0], p.seal[1]]
        starts, lens, at = [], [], 1  # substring counts from 1
        for line in p.lines:
            starts.append(at)
            lens.append(len(line))
            at += len(line)
        params += [p.last_seq, b"".join(p.lines), numbers(starts), numbers(lens)]
        return (APPEND if p.seal is None else APPEND_SEALED), params

    def _params(self, batch: list[Pending]) -> dict[str, object]:
        """BATCH's parameters: array literals, and the lines and seals in one bytea (see BATCH)."""
        blob = bytearray()
        line_runs: list[str] = []
        line_seqs: list[int] = []
        line_starts: list[int] = []
        line_lens: list[int] = []
        for pending in batch:
            for n, line in enumerate(pending.lines, 1):
                line_runs.append(pending.run_id)
                line_seqs.append(pending.last_seq + n)
                line_starts.append(len(blob) + 1)  # substring counts from 1
                line_lens.append(len(line))
                blob += line
        seal_runs: list[str] = []
        seal_names: list[str] = []
        seal_starts: list[int] = []
        seal_lens: list[int] = []
        for pending in batch:
            if pending.seal is not None:
                seal_runs.append(pending.run_id)
                seal_names.append(pending.seal[0])
                seal_starts.append(len(blob) + 1)
                seal_lens.append(len(pending.seal[1]))
                blob += pending.seal[1]
        return {"lease": self._lease, "runs": texts(p.run_id for p in batch), "owners": texts(p.owner for p in batch),
                "seqs": numbers(p.last_seq for p in batch), "heads": texts(p.head for p in batch),
                "new_seqs": numbers(p.seq for p in batch), "new_heads": texts(p.prev for p in batch),
                "kind": self._seal_kind, "blob": bytes(blob),
                "seal_runs": texts(seal_runs), "seal_names": texts(seal_names),
                "seal_starts": numbers(seal_starts), "seal_lens": numbers(seal_lens),
                "line_runs": texts(line_runs), "line_seqs": numbers(line_seqs),
                "line_starts": numbers(line_starts), "line_lens": numbers(line_lens)}


def texts(values: Iterable[str]) -> str:
    """A PostgreSQL text[] literal: each element quoted, its quotes and backslashes escaped."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def numbers(values: Iterable[int]) -> str:
    """A PostgreSQL integer array literal."""
    return "{" + ",".join(map(str, values)) + "}"
