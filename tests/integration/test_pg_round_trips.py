"""The PostgreSQL store's short paths keep every rule of the long ones (journal/pg_writer.py,
migration 0004): owning a run is one call that never leaves a lock behind, and a batch that
ends in a seal keeps the seal's side row in its own transaction, conditional on the same
owner and chain as its lines. Attacked as the other tests attack appends: a writer whose run
was taken, a replayed append, a takeover. On the session's private server.
"""

from __future__ import annotations

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from journal import JournalError, JournalLockedError, JournalNotFoundError, JournalWriteError, Record, Transition
from journal.pg_group import APPEND_SEALED, BATCH, Pending
from journal.pg_store import PgStore
from journal.pg_writer import PgWriter
from journal.seal import KIND, fetch_seal, seal_after, side_name

from journal_builders import run_started, step_batch
from waiting import wait_for

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def store(pg_url: str):
    s = PgStore(pg_url, lease=1.0)
    yield s
    s.close()


def sealed(writer: PgWriter, records: list[Record]) -> list[Record]:
    """`records` and the seal that covers them, as the runner builds a batch that comes to rest."""
    for record in records:
        record.ts = record.ts or "2026-11-30T12:00:00.000000Z"
    seal = seal_after(records, writer.cursor, KEY, writer.run_id)
    seal.ts = "2026-11-30T12:00:00.000000Z"
    return [*records, seal]


def advisory_locks(pg_url: str) -> int:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                           " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                           ).fetchone()
    return int(row[0]) if row else -1


def test_a_batch_ending_in_a_seal_keeps_it_as_the_side_file_in_the_same_append(store: PgStore) -> None:
    with store.writer("r1", create=True) as writer:
        assert writer.created
        writer.append_sealed(sealed(writer, [run_started("r1"), *step_batch("a", key="r1/a/1")]))
        head = writer.last_seq
    lines = store.lines("r1")
    assert store.fetch(KIND, side_name("r1")) == lines[-1]  # the seal's own line, byte for byte
    kept = fetch_seal(store, "r1")
    assert kept is not None and kept.seq == head and kept.through == head - 1
    assert store.verify("r1").ok
    with store.writer("r1") as writer:  # a later rest moves the side file on, with the journal
        assert not writer.created and writer.last_seq == head
        writer.append_sealed(sealed(writer, [Transition(trigger="go", source="a", dest="b")]))
    assert fetch_seal(store, "r1").seq == head + 2  # type: ignore[union-attr]


def test_a_writer_whose_run_was_taken_keeps_neither_its_lines_nor_its_seal(store: PgStore, pg_url: str) -> None:
    with store.writer("r1", create=True) as writer:
        writer.append_sealed(sealed(writer, [run_started("r1")]))
    before = store.fetch(KIND, side_name("r1"))
    writer = store.writer("r1")
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:  # another host's takeover, as the row sees it
            other.execute("UPDATE ratchet_runs SET owner = 'another-host' WHERE run_id = 'r1'")
        with pytest.raises(JournalWriteError, match="no longer owned"):
            writer.append_sealed(sealed(writer, [Transition(trigger="go", source="stale", dest="x")]))
    finally:
        writer.close()
    assert store.fetch(KIND, side_name("r1")) == before
    assert len(store.read("r1").records) == 2 and store.verify("r1").ok


@pytest.mark.parametrize("statement", ["alone", "batched"])
def test_a_replayed_sealed_append_moves_neither_the_journal_nor_its_seal_back(store: PgStore, pg_url: str,
                                                                            statement: str) -> None:
    """The same statement sent again, by its owner, with the parameters of an earlier append
    (a retry, or someone replaying captured traffic): the chain has moved on, so nothing lands."""
    with store.writer("r1", create=True) as writer:
        writer.append_sealed(sealed(writer, [run_started("r1")]))
        first = store.fetch(KIND, side_name("r1"))
        writer.append_sealed(sealed(writer, [*step_batch("a", key="r1/a/1")]))
        newest = store.fetch(KIND, side_name("r1"))
        assert first is not None and newest != first
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("SET search_path TO " + store._schema)
            forged = Pending(conn=other, run_id="r1", owner=writer.owner, last_seq=0, head="0" * 64, seq=2,
                             prev="forged-head", lines=[b'{"forged":1}', first.rstrip(b"\n")],
                             seal=(side_name("r1"), first))
            if statement == "alone":  # an append on its own (journal.pg_group: APPEND_SEALED)
                query, params = store.group()._alone(forged)
                assert query == APPEND_SEALED
                assert other.execute(query, params).rowcount == 0
            else:  # the same inside a batch of appends of several runs
                assert other.execute(BATCH, store.group()._params([forged])).fetchall() == []
    assert store.fetch(KIND, side_name("r1")) == newest
    assert store.verify("r1").ok


def test_owning_a_run_that_is_not_there_leaves_no_lock_behind(store: PgStore, pg_url: str) -> None:
    with pytest.raises(JournalNotFoundError):
        store.writer("missing")
    with store.writer("old", create=True) as writer:
        writer.append_sealed(sealed(writer, [run_started("old")]))
    store.archive("old", head=store.read("old").cursor.head)
    with pytest.raises(JournalError, match="archived"):
        store.writer("old", create=True)
    assert advisory_locks(pg_url) == 0


def test_a_takeover_holds_the_run_once_so_closing_lets_it_go(store: PgStore, pg_url: str) -> None:
    """A frozen owner (its lease no longer renewed) loses the run to a taker; when the taker
    closes, the run is free: the taker's lock was taken once, not twice."""
    with store.writer("r1", create=True) as writer:
        writer.append_many([run_started("r1")])
    frozen = store.writer("r1")
    store._keeper.remove(frozen)  # it renews nothing from now on, as a frozen host
    try:
        with pytest.raises(JournalLockedError):
            store.writer("r1")  # its lease still runs

        def take() -> PgWriter | None:
            try:
                return store.writer("r1")
            except JournalLockedError:
                return None

        with wait_for(take, timeout=15, what="the takeover") as taker:
            taker.append(Transition(trigger="go", source="taker", dest="y"))
        assert advisory_locks(pg_url) == 0
        with pytest.raises(JournalWriteError):
            frozen.append(Transition(trigger="go", source="frozen", dest="x"))
    finally:
        frozen.close()
    assert [r.source for r in store.read("r1").records if isinstance(r, Transition)] == ["taker"]
