"""Group commit across runs (journal/pg_group.py), on the session's private server.

Appends of several runs that wait at the same moment in one process share one transaction,
each with its own conditions and its own outcome. Each test makes the moment certain rather
than likely: another session holds a run's row lock (`SELECT ... FOR UPDATE`), so the batch
in flight waits on the server while the other writers queue behind it; the lock is let go
once the test has seen them queued. What was committed together is read from the server:
a row's `xmin` is the transaction that inserted it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest

from journal import JournalWriteError, Transition
from journal.pg_group import GroupCommit, numbers, texts
from journal.pg_store import PgStore
from journal.pg_writer import PgWriter

from journal_builders import run_started
from waiting import wait_for

LANES = 8


@pytest.fixture
def store(pg_url: str) -> Iterator[PgStore]:
    s = PgStore(pg_url, pool_size=2 * LANES + 2)
    yield s
    s.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(LANES) as executor:
        yield executor


def opened(store: PgStore, run_ids: list[str]) -> list[PgWriter]:
    writers = []
    for run_id in run_ids:
        writer = store.writer(run_id, create=True)
        writer.append(run_started(run_id))
        writers.append(writer)
    return writers


def step(writer: PgWriter, n: int) -> Callable[[], int]:
    return lambda: len(writer.append_many([Transition(trigger="go", source=f"s{n}", dest=f"s{n + 1}")]))


@contextmanager
def row_locked(pg_url: str, store: PgStore, run_id: str) -> Iterator[psycopg.Connection]:  # type: ignore[type-arg]
    """Another session holding `run_id`'s row: an append of it waits on the server until the block ends."""
    with psycopg.connect(pg_url) as other:
        other.execute(f"SET search_path TO {store._schema}")
        other.execute("SELECT 1 FROM ratchet_runs WHERE run_id = %s FOR UPDATE", [run_id])
        yield other
        other.rollback()


def waiting_on_lock(pg_url: str, at_least: int = 1) -> None:
    def blocked() -> bool:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()
        return bool(row and row[0] >= at_least)

    wait_for(blocked, timeout=20, what="a batch waiting on the row lock")


def transactions(pg_url: str, store: PgStore, run_ids: list[str], *, after_seq: int = 1) -> dict[str, str]:
    """The transaction (xmin) that inserted each run's lines after `after_seq`."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {store._schema}")
        rows = conn.execute("SELECT DISTINCT run_id, xmin::text FROM ratchet_records"
                            " WHERE run_id = ANY(%s) AND seq > %s", [run_ids, after_seq]).fetchall()
    found: dict[str, str] = {}
    for run_id, xmin in rows:
        assert run_id not in found, f"{run_id}'s lines came in more than one transaction"
        found[run_id] = xmin
    return found


def test_appends_that_wait_together_commit_together(store: PgStore, pool: ThreadPoolExecutor, pg_url: str) -> None:
    runs = [f"r{i}" for i in range(LANES)]
    writers = opened(store, runs)
    try:
        with row_locked(pg_url, store, "r0"):
            first = pool.submit(step(writers[0], 1))  # leads at once, then waits on the server
            waiting_on_lock(pg_url)
            rest = [pool.submit(step(w, 1)) for w in writers[1:]]
            wait_for(lambda: store.group().queued == LANES - 1, what="the other appends queued")
        assert [f.result(timeout=20) for f in [first, *rest]] == [1] * LANES
    finally:
        for writer in writers:
            writer.close()
    xmins = transactions(pg_url, store, runs)
    assert set(xmins) == set(runs)
    assert xmins["r0"] not in {xmins[r] for r in runs[1:]}
    assert len({xmins[r] for r in runs[1:]}) == 1  # seven appends, one transaction
    for run_id in runs:
        assert store.verify(run_id).ok and store.read(run_id).cursor.seq == 2


def test_a_lone_append_goes_at_once(store: PgStore) -> None:
    """No batch in flight: the append leads and commits without waiting for company."""
    (writer,) = opened(store, ["alone"])
    with writer:
        before = store.group().batches
        step(writer, 1)()
        assert store.group().batches == before + 1
    assert store.read("alone").cursor.seq == 2


def test_a_writer_that_lost_its_run_inside_a_batch_appends_nothing_and_the_others_land(
        store: PgStore, pool: ThreadPoolExecutor, pg_url: str) -> None:
    runs = [f"r{i}" for i in range(LANES)]
    writers = opened(store, runs)
    try:
        with row_locked(pg_url, store, "r0"):
            first = pool.submit(step(writers[0], 1))
            waiting_on_lock(pg_url)
            with psycopg.connect(pg_url, autocommit=True) as taker:  # another host took r3, as its row sees it
                taker.execute(f"SET search_path TO {store._schema}")
                taker.execute("UPDATE ratchet_runs SET owner = 'another-host' WHERE run_id = 'r3'")
            rest = {w.run_id: pool.submit(step(w, 1)) for w in writers[1:]}
            wait_for(lambda: store.group().queued == LANES - 1, what="the other appends queued")
        assert first.result(timeout=20) == 1
        with pytest.raises(JournalWriteError, match="no longer owned"):
            rest.pop("r3").result(timeout=20)
        assert [f.result(timeout=20) for f in rest.values()] == [1] * (LANES - 2)
        assert writers[3].broken and writers[3].last_seq == 1  # refuses every later append
        with pytest.raises(JournalWriteError, match="unusable"):
            step(writers[3], 2)()
        assert all(w.last_seq == 2 and not w.broken for w in writers if w.run_id != "r3")
    finally:
        for writer in writers:
            writer.close()
    xmins = transactions(pg_url, store, runs)
    assert "r3" not in xmins  # nothing of it inserted
    assert len({xmins[r] for r in runs[1:] if r != "r3"}) == 1  # the others, in one transaction
    assert store.read("r3").cursor.seq == 1 and store.verify("r3").ok
    for run_id in runs:
        assert store.verify(run_id).ok


def test_when_the_leaders_connection_dies_mid_batch_a_follower_learns_its_own_outcome(
        store: PgStore, pool: ThreadPoolExecutor, pg_url: str) -> None:
    """The leader's session is ended (as a taker of the leader's own run would end it) while
    its batch, its own append and a follower's, waits on the server: nothing of the batch
    commits; the leader's writer refuses appends (a reopen reads what its run holds); the
    follower asks on its own connection, finds its lines did not land, and sends them again."""
    writers = opened(store, ["gate", "leader", "follower"])
    gate, leader, follower = writers
    try:
        with row_locked(pg_url, store, "follower"):
            with row_locked(pg_url, store, "gate"):
                gated = pool.submit(step(gate, 1))  # the batch in flight: the next two queue behind it
                waiting_on_lock(pg_url)
                led = pool.submit(step(leader, 1))
                wait_for(lambda: store.group().queued == 1, what="the leader queued")
                followed = pool.submit(step(follower, 1))
                wait_for(lambda: store.group().queued == 2, what="the follower queued")
            assert gated.result(timeout=20) == 1
            waiting_on_lock(pg_url)  # the leader's batch of two now waits on the follower's row
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [leader.conn.info.backend_pid])
            with pytest.raises(JournalWriteError, match="append failed"):
                led.result(timeout=20)
            assert not followed.done()  # it asks on its own connection: that waits on the row too
        assert followed.result(timeout=20) == 1
        assert leader.broken and leader.last_seq == 1
        assert follower.last_seq == 2 and not follower.broken
        step(follower, 2)()  # it goes on, under the owner token it took when it asked
    finally:
        for writer in writers:
            writer.close()
    assert store.read("leader").cursor.seq == 1  # nothing of the lost batch
    assert [r.source for r in store.read("follower").records if isinstance(r, Transition)] == ["s1", "s2"]
    for run_id in ("gate", "leader", "follower"):
        assert store.verify(run_id).ok


def test_a_batch_whose_statement_fails_is_sent_again_append_by_append(
        store: PgStore, pool: ThreadPoolExecutor, pg_url: str) -> None:
    """A row put behind the store's back where r5's next line goes (damage, or a foreign
    writer) fails the batched statement for everyone: it is rolled back and each append is
    sent again alone, so only r5's fails (nothing of it inserted) and the others land."""
    runs = [f"r{i}" for i in range(LANES)]
    writers = opened(store, runs)
    try:
        with psycopg.connect(pg_url, autocommit=True) as foreign:
            foreign.execute(f"SET search_path TO {store._schema}")
            foreign.execute("INSERT INTO ratchet_records (run_id, seq, line) VALUES ('r5', 2, 'foreign')")
        with row_locked(pg_url, store, "r0"):
            first = pool.submit(step(writers[0], 1))
            waiting_on_lock(pg_url)
            rest = {w.run_id: pool.submit(step(w, 1)) for w in writers[1:]}
            wait_for(lambda: store.group().queued == LANES - 1, what="the other appends queued")
        assert first.result(timeout=20) == 1
        with pytest.raises(JournalWriteError, match="append failed.*duplicate key"):
            rest.pop("r5").result(timeout=20)
        assert [f.result(timeout=20) for f in rest.values()] == [1] * (LANES - 2)
        assert writers[5].broken and writers[5].last_seq == 1
    finally:
        for writer in writers:
            writer.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {store._schema}")
        assert conn.execute("SELECT last_seq FROM ratchet_runs WHERE run_id = 'r5'").fetchone() == (1,)
        assert conn.execute("SELECT line FROM ratchet_records WHERE run_id = 'r5' AND seq = 2").fetchone() == (
            b"foreign",)
    for run_id in runs:
        if run_id != "r5":
            assert store.read(run_id).cursor.seq == 2 and store.verify(run_id).ok


@pytest.mark.parametrize("values", [["r1", "a.b-c_d"], ['quote"d', "back\\slash", "comma,brace{}", " spaced ", ""], []])
def test_the_batch_array_literals_read_back_as_written(pg_url: str, values: list[str]) -> None:
    """The batch passes its arrays as literals (journal.pg_group.texts, numbers): whatever a
    run id or an owner token holds reads back element for element."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT %s::text[]", [texts(values)]).fetchone() == (values,)
        numbers_back = conn.execute("SELECT %s::bigint[]", [numbers(range(len(values)))]).fetchone()
        assert numbers_back == (list(range(len(values))),)


class Interrupted(Exception):
    """Stands for anything but a database error escaping a leader (a KeyboardInterrupt, a bug)."""


def test_a_leader_interrupted_mid_batch_leaves_no_follower_waiting(
        store: PgStore, pool: ThreadPoolExecutor, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever escapes the leader, every append of its batch gets an outcome: the leader's
    writer refuses appends from then on, and its follower asks on its own connection, finds
    that nothing landed, and sends its lines again."""
    writers = opened(store, ["gate", "leader", "follower"])
    gate, leader, follower = writers
    real_send = GroupCommit._send

    def send(self: GroupCommit, conn: psycopg.Connection, batch: list) -> None:  # type: ignore[type-arg]
        if len(batch) == 2:
            raise Interrupted()
        real_send(self, conn, batch)

    monkeypatch.setattr(GroupCommit, "_send", send)
    try:
        with row_locked(pg_url, store, "gate"):
            gated = pool.submit(step(gate, 1))
            waiting_on_lock(pg_url)
            led = pool.submit(step(leader, 1))
            wait_for(lambda: store.group().queued == 1, what="the leader queued")
            followed = pool.submit(step(follower, 1))
            wait_for(lambda: store.group().queued == 2, what="the follower queued")
        assert gated.result(timeout=20) == 1
        with pytest.raises(Interrupted):
            led.result(timeout=20)
        assert followed.result(timeout=20) == 1
        assert leader.broken and leader.last_seq == 1
        with pytest.raises(JournalWriteError, match="unusable"):
            step(leader, 2)()
        assert follower.last_seq == 2 and not follower.broken
    finally:
        for writer in writers:
            writer.close()
    assert store.read("leader").cursor.seq == 1
    assert store.read("follower").cursor.seq == 2 and store.verify("follower").ok
