"""Durable deadlines on the PostgreSQL store: one row per resting run, claimed by supervisors.

    ratchet_timers(run_id, due_at, seq, claimed_by, claimed_until)   (pg_migrations/0003)

A run's writer sets its row once the journal says the run rests with a deadline (a wait's
timeout, a retry's back-off; `due_at` on the engine's clock, `seq` the journal's last record
then), and clears it once the run rests without one. Supervisors take due rows with one
statement on the `due_at` index, `FOR UPDATE SKIP LOCKED`, and mark them claimed until
`claimed_until` (the server's clock, as a run's lease is): two supervisors never take the
same row, and the claims of one that died run out. Setting a row again clears its claim.

The row only says *when* to look; the journal says whether the deadline still stands. A
crash between an append and the row's update leaves a row behind the journal (`seq` older)
or none at all; whoever claims a stale row repairs it from the journal (`set` a newer
deadline, `clear` up to the seq it read), and `seq` guards every write: a row is never
replaced by an older one nor cleared by someone who read less than what set it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from journal.timers import Due

Query = Callable[[Any, Any], list[tuple[Any, ...]]]  # PgStore._query: rows of one statement
Execute = Callable[[Any, Any], int]  # PgStore._execute: rows changed by one statement

# Every statement commits without waiting for the disk (as a run's claim and a seal's side row
# do): the journal is durable first, and a timer, a claim or a release a server crash loses is
# repaired from it like one a crashed process never wrote (see above). `ASYNC` is joined in
# so that it is evaluated: set_config(..., true) lasts until the statement's commit.
ASYNC = "(SELECT set_config('synchronous_commit', 'off', true)) AS async"
SET = ("INSERT INTO ratchet_timers (run_id, due_at, seq) SELECT %s, %s, %s FROM " + ASYNC +
       " ON CONFLICT (run_id) DO UPDATE SET due_at = excluded.due_at, seq = excluded.seq,"
       " claimed_by = NULL, claimed_until = NULL WHERE ratchet_timers.seq <= excluded.seq")
ENSURE = ("INSERT INTO ratchet_timers (run_id, due_at, seq) SELECT t.* FROM " + ASYNC +
          ", unnest(%s::text[], %s::timestamptz[], %s::bigint[]) AS t ON CONFLICT (run_id) DO NOTHING")
CLEAR = "DELETE FROM ratchet_timers USING " + ASYNC + " WHERE run_id = %s AND seq <= %s"
# The due rows in due order, skipping those another transaction is claiming right now and
# those claimed by a supervisor whose claim still runs: one range scan of the due_at index.
CLAIM = ("WITH due AS (SELECT run_id FROM ratchet_timers"
         " WHERE due_at <= %(now)s AND (claimed_until IS NULL OR claimed_until < now())"
         " ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
         " UPDATE ratchet_timers t SET claimed_by = %(owner)s,"
         " claimed_until = now() + %(lease)s * interval '1 second'"
         " FROM due, " + ASYNC + " WHERE t.run_id = due.run_id RETURNING t.run_id, t.due_at, t.seq")
RELEASE = ("UPDATE ratchet_timers SET claimed_by = NULL, claimed_until = NULL FROM " + ASYNC +
           " WHERE claimed_by = %s")


class PgTimers:
    """The timers of one PostgreSQL store (its `timers`: journal.timers.Timers)."""

    def __init__(self, query: Query, execute: Execute, *, lease: float) -> None:
        self._query = query
        self._execute = execute
        self.lease = lease  # seconds a claim lasts: the store's lease (RATCHET_PG_LEASE)

    def set(self, run_id: str, due: datetime, seq: int) -> None:
        """The run rests until `due` as of record `seq` (unless a newer row says otherwise)."""
        self._execute(SET, [run_id, due, seq])

    def clear(self, run_id: str, seq: int) -> None:
        """The run has no deadline as of record `seq`: drop a row set at or before it."""
        self._execute(CLEAR, [run_id, seq])

    def ensure(self, timers: Sequence[tuple[str, datetime, int]]) -> int:
        """Add rows for runs that have none (a crash lost them); existing rows stay. Returns how many."""
        if not timers:
            return 0
        runs, dues, seqs = zip(*timers, strict=True)
        return self._execute(ENSURE, [list(runs), list(dues), list(seqs)])

    def claim(self, now: datetime, owner: str, limit: int) -> list[Due]:
        """Take up to `limit` rows due at `now` (the engine's clock), earliest first, for `owner`."""
        if limit <= 0:
            return []
        rows = self._query(CLAIM, {"now": now, "limit": limit, "owner": owner, "lease": self.lease})
        return sorted((Due(str(r[0]), r[1], int(r[2])) for r in rows), key=lambda d: d.due)

    def release(self, owner: str) -> int:
        """Give up every claim of `owner` (a supervisor that stops); returns how many."""
        return self._execute(RELEASE, [owner])
