"""What only the PostgreSQL store must do, beyond the contract suite (tests/contract).

One writer per run across hosts: a writer that lost its run (frozen past its lease, or
its ownership taken) never appends again; `changes` never misses an append whose
transaction commits late; the schema is versioned. On the session's private server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psycopg
import pytest

from journal import JournalError, JournalLockedError, JournalWriteError, Transition, open_store
from journal.pg_schema import LATEST
from journal.pg_store import PgStore

from journal_builders import run_started, step_batch
from waiting import wait_for


@pytest.fixture
def store(pg_url: str):
    s = PgStore(pg_url, lease=1.0)
    yield s
    s.close()


def create(store: PgStore, run_id: str) -> None:
    with store.writer(run_id, create=True) as w:
        w.append_many([run_started(run_id), *step_batch("a", key=f"{run_id}/a/1")])


FROZEN = """
import sys
from journal import Transition
from journal.pg_store import PgStore
store = PgStore(sys.argv[1], lease=1.0)
writer = store.writer("r1")
print("holding", flush=True)
sys.stdin.readline()  # the test freezes this process (SIGSTOP), takes the run, then wakes it
try:
    writer.append(Transition(trigger="go", source="frozen", dest="x"))
except Exception as exc:
    print("refused", type(exc).__name__, flush=True)
else:
    print("appended", flush=True)
"""


def test_a_frozen_writer_loses_its_run_after_its_lease_and_never_appends_again(store: PgStore, pg_url: str) -> None:
    create(store, "r1")
    frozen = subprocess.Popen([sys.executable, "-c", FROZEN, pg_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert frozen.stdout.readline().strip() == "holding"
        os.kill(frozen.pid, signal.SIGSTOP)  # a host that froze, or lost the network: it renews nothing
        assert store.held("r1")
        with pytest.raises(JournalLockedError):
            store.writer("r1")  # its lease still runs: not taken
        wait_for(lambda: not store.held("r1"), timeout=15, what="the frozen writer's lease to run out")

        def take():
            try:
                return store.writer("r1")
            except JournalLockedError:
                return None

        with wait_for(take, timeout=15, what="the takeover") as taker:
            taker.append(Transition(trigger="go", source="taker", dest="y"))
        os.kill(frozen.pid, signal.SIGCONT)
        frozen.stdin.write("wake\n")
        frozen.stdin.flush()
        assert frozen.stdout.readline().split()[0] == "refused"
        assert frozen.wait(timeout=20) == 0
    finally:
        if frozen.poll() is None:
            os.kill(frozen.pid, signal.SIGCONT)
            frozen.kill()
            frozen.wait(timeout=10)
        frozen.stdin.close()
        frozen.stdout.close()
    records = store.read("r1").records
    assert [r.source for r in records if isinstance(r, Transition)] == ["a", "taker"]
    assert store.verify("r1").ok


def test_a_writer_whose_ownership_was_taken_appends_nothing_even_with_its_session_alive(
        store: PgStore, pg_url: str) -> None:
    create(store, "r1")
    writer = store.writer("r1")
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:  # another host's takeover, as the row sees it
            other.execute("UPDATE ratchet_runs SET owner = 'another-host' WHERE run_id = 'r1'")
        with pytest.raises(JournalWriteError, match="no longer owned"):
            writer.append(Transition(trigger="go", source="stale", dest="x"))
        with pytest.raises(JournalWriteError):  # and every later append too
            writer.append(Transition(trigger="go", source="stale", dest="x"))
    finally:
        writer.close()
    assert len(store.read("r1").records) == 4 and store.verify("r1").ok


def test_an_append_that_does_not_continue_the_chain_is_refused(store: PgStore, pg_url: str) -> None:
    create(store, "r1")
    writer = store.writer("r1")
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:  # the chain moved on without this writer
            other.execute("UPDATE ratchet_runs SET last_seq = last_seq + 1 WHERE run_id = 'r1'")
        with pytest.raises(JournalWriteError):
            writer.append(Transition(trigger="go", source="stale", dest="x"))
    finally:
        writer.close()
    assert len(store.read("r1").records) == 4


def test_changes_report_an_append_whose_transaction_committed_after_a_later_one(
        store: PgStore, pg_url: str) -> None:
    create(store, "early")
    create(store, "late")
    before = store.changes()
    with psycopg.connect(pg_url) as slow:  # takes its change number first, commits last
        slow.execute("UPDATE ratchet_runs SET change = nextval('ratchet_change'), txid = pg_current_xact_id()"
                     " WHERE run_id = 'early'")
        with store.writer("late") as w:
            w.append(Transition(trigger="go", source="a", dest="b"))
        middle = store.changes(before.cursor)
        assert middle.run_ids == ["late"]
        slow.commit()
    after = store.changes(middle.cursor)
    assert "early" in after.run_ids
    assert store.changes(after.cursor).run_ids == []


def test_the_schema_is_versioned_and_a_newer_one_is_refused(pg_url: str) -> None:
    store = PgStore(pg_url)
    try:
        assert store.init() == (0, LATEST)
        assert store.init() == (LATEST, LATEST)
        assert store.run_ids() == []
    finally:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO ratchet_schema_version (version) VALUES (%s)", [LATEST + 1])
    newer = open_store(pg_url)
    with pytest.raises(JournalError, match=f"schema version {LATEST + 1} is newer"):
        newer.run_ids()


def test_an_unreachable_server_is_one_line_with_a_hint(tmp_path) -> None:
    store = open_store(f"postgresql://nobody@/ratchet?host={tmp_path}&port=1")
    with pytest.raises(JournalError, match="cannot connect .*hint: is the server running"):
        store.run_ids()


def test_a_row_edited_or_removed_behind_ratchets_back_fails_verify_at_its_line(store: PgStore, pg_url: str) -> None:
    create(store, "edited")
    create(store, "removed")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # someone with SQL access
        conn.execute("UPDATE ratchet_records SET line = convert_to(replace(convert_from(line, 'UTF8'),"
                     " '\"attempt\":1', '\"attempt\":2'), 'UTF8') WHERE run_id = 'edited' AND seq = 2")
        conn.execute("DELETE FROM ratchet_records WHERE run_id = 'removed' AND seq = 3")
    edited = store.verify("edited")
    assert not edited.ok and edited.line == 3 and "hash chain broken" in edited.problem
    removed = store.verify("removed")
    assert not removed.ok and removed.line == 3 and "seq 4 where 3 was expected" in removed.problem
    # the verdict names the journal by the store's URL, both slashes kept (a Path would fold them)
    assert str(edited).startswith(f"{store.location}/runs/edited:3: hash chain broken")
    assert str(edited).startswith("postgresql://")


def test_a_bad_url_is_one_line_that_does_not_repeat_the_password() -> None:
    with pytest.raises(JournalError) as refused:
        open_store("postgresql://ratchet:s3cret@db.internal/ratchet?bogus=1")
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)
    assert "hint: postgresql://USER@HOST:PORT/DATABASE" in str(refused.value)
    assert open_store("postgresql://ratchet:s3cret@db.internal:5433/ratchet").location == \
        "postgresql://ratchet@db.internal:5433/ratchet"


def test_a_copy_whose_row_another_host_withdrew_or_rewrote_is_tidied_on_its_host(pg_url: str, tmp_path) -> None:
    here, there = PgStore(pg_url, home=tmp_path / "a"), PgStore(pg_url, home=tmp_path / "b")
    try:
        assert here.tidy_copies("escalations") == []  # no folder yet: nothing, no query
        here.publish("escalations", "r1.json", b"one\n")
        here.publish("escalations", "r2.json", b"two\n")
        copies = tmp_path / "a" / "escalations"
        (copies / ".r3.json.99.tmp").write_bytes(b"a publish in flight")
        there.withdraw("escalations", "r1.json")  # resolved on the other host: only its copy goes there
        there.publish("escalations", "r2.json", b"two, notified\n")
        assert (copies / "r1.json").exists()
        assert here.tidy_copies("escalations") == ["r1.json"]
        assert sorted(p.name for p in copies.iterdir()) == [".r3.json.99.tmp", "r2.json"]
        assert (copies / "r2.json").read_bytes() == b"two, notified\n"
        assert here.fetch("escalations", "r2.json") == b"two, notified\n"  # the rows are untouched
        assert here.tidy_copies("escalations") == []
    finally:
        here.close()
        there.close()
