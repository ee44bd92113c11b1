"""What every journal store must do (journal/store.py), checked through the interface only.

Run against each store in conftest.KITS. Torn tails and byte-level damage are the file
store's own business and are tested in tests/faults and tests/property.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from itertools import pairwise

import pytest

from journal import (
    GENESIS,
    InvalidRunIdError,
    JournalLockedError,
    JournalNotFoundError,
    JournalReplacedError,
    RunStarted,
    Transition,
    encode,
    line_hash,
)

from journal_builders import run_started, step_batch
from waiting import wait_for


def started(run_id: str) -> RunStarted:
    return run_started(run_id, definition={"name": "m", "initial": "a"}, input={"customer": "acme"})


def steps(n: int, state: str = "a") -> list:
    return [record for i in range(n) for record in step_batch(state, key=f"k/{state}/{i}", data={"i": i})]


def create(store, run_id: str, n: int = 1) -> None:
    with store.writer(run_id, create=True) as w:
        w.append_many([started(run_id), *steps(n)])


# --- writing and reading back --------------------------------------------------------


def test_appended_records_read_back_in_order_with_seq_and_chain(kit) -> None:
    store = kit.store
    with store.writer("r1", create=True) as w:
        assert w.created and w.last_seq == 0
        written = w.append_many([started("r1"), *steps(2)])
        assert [r.seq for r in written] == list(range(1, 8))
        one = w.append(Transition(trigger="go", source="a", dest="b"))
        assert one.seq == 8 and one.ts
        end = w.cursor
    chunk = store.read("r1")
    assert [encode(r) for r in chunk.records] == [encode(r) for r in [*written, one]]
    assert chunk.records[0].prev == GENESIS
    for before, after in pairwise(chunk.records):
        assert after.prev == line_hash(encode(before))
    assert chunk.cursor == end and chunk.cursor.seq == 8
    assert chunk.cursor.head == line_hash(encode(chunk.records[-1]))
    assert chunk.torn_bytes == 0


def test_verify_passes_and_names_the_head(kit) -> None:
    create(kit.store, "r1", 3)
    result = kit.store.verify("r1")
    assert result.ok and result.records == 10
    assert result.last_hash == kit.store.read("r1").cursor.head
    assert not kit.store.verify("r1", head="f" * 64).ok  # an anchor kept elsewhere catches a cut end


def test_an_empty_batch_writes_nothing(kit) -> None:
    create(kit.store, "r1")
    with kit.store.writer("r1") as w:
        before = w.cursor
        assert list(w.append_many([])) == []
        assert w.cursor == before
    assert kit.store.verify("r1").records == 4


# --- owning a run --------------------------------------------------------------------


def test_creating_is_idempotent_and_opening_a_missing_run_is_refused(kit) -> None:
    store = kit.store
    assert not store.exists("r1")
    with pytest.raises(JournalNotFoundError, match="no journal for run 'r1'"):
        store.writer("r1")
    create(store, "r1", 1)
    with store.writer("r1", create=True) as again:
        assert not again.created and again.last_seq == 4
    assert store.exists("r1") and store.run_ids() == ["r1"]


def test_one_writer_at_a_time_in_one_process(kit) -> None:
    create(kit.store, "r1")
    with kit.store.writer("r1"):
        with pytest.raises(JournalLockedError, match="run 'r1'"):
            kit.store.writer("r1")
        with pytest.raises(JournalLockedError):
            kit.store.writer("r1", create=True)
    with kit.store.writer("r1") as w:  # released by close
        w.append(Transition(trigger="go", source="a", dest="b"))


PROBE = """
import sys
from journal import JournalLockedError, open_store
try:
    open_store(sys.argv[1]).writer(sys.argv[2])
except JournalLockedError:
    print("locked")
else:
    print("owned")
"""


def test_another_process_cannot_own_a_run_this_one_holds(kit) -> None:
    create(kit.store, "r1")
    probe = [sys.executable, "-c", PROBE, kit.url, "r1"]
    with kit.store.writer("r1"):
        assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == "locked"
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == "owned"


WRITER = """
import sys, time
from journal import JournalLockedError, Transition, open_store
store, run_id, who, n = open_store(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
done = 0
while done < n:
    try:
        w = store.writer(run_id)
    except JournalLockedError:
        time.sleep(0.0005)
        continue
    with w:
        w.append(Transition(trigger="go", source=who, dest=str(done)))
    done += 1
"""


def test_two_processes_appending_to_one_run_make_one_linear_journal(kit) -> None:
    create(kit.store, "r1", 0)
    n = 60
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, kit.url, "r1", who, str(n)])
               for who in ("p", "q")]
    for proc in writers:
        assert proc.wait(timeout=120) == 0
    records = kit.store.read("r1").records
    assert [r.seq for r in records] == list(range(1, 2 * n + 2))
    assert kit.store.verify("r1").ok
    for who in ("p", "q"):  # each writer's records, all there, in its own order
        assert [r.dest for r in records[1:] if r.source == who] == [str(i) for i in range(n)]


HOLDER = """
import sys
from journal import open_store
writer = open_store(sys.argv[1]).writer(sys.argv[2])
print("holding", flush=True)
sys.stdin.read()  # until the test closes stdin, or kills this process
writer.close()
print("closed", flush=True)
"""


def test_held_while_a_writer_is_open_in_this_process_and_not_after_close(kit) -> None:
    store = kit.store
    assert not store.held("nobody")
    create(store, "r1")
    assert not store.held("r1")
    with store.writer("r1"):
        assert store.held("r1") and store.held("r1")  # a probe takes nothing: ask twice
        assert not store.held("r2")
    assert not store.held("r1")
    with store.writer("r1") as w:  # the probes left nothing behind: the run can be owned
        w.append(Transition(trigger="go", source="a", dest="b"))


def test_held_by_another_process_until_it_closes_or_is_killed(kit) -> None:
    create(kit.store, "r1")
    for ending in ("close", "kill -9"):
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, kit.url, "r1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "holding"
            assert kit.store.held("r1")
            with pytest.raises(JournalLockedError):
                kit.store.writer("r1")
            if ending == "close":
                holder.stdin.close()
                assert holder.stdout.readline().strip() == "closed"
                assert not kit.store.held("r1")  # released by close, the process still alive
                assert holder.wait(timeout=10) == 0
            else:
                holder.kill()
                assert holder.wait(timeout=10) == -9
                # released with the process: at once by the kernel (file), or as soon as
                # the server ends the dead client's backend (PostgreSQL)
                if kit.release_after_death_s:
                    wait_for(lambda: not kit.store.held("r1"), timeout=kit.release_after_death_s,
                             what="the dead holder's lock released")
                assert not kit.store.held("r1")
                with kit.store.writer("r1"):  # and the run can be owned again
                    pass
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait(timeout=10)
            holder.stdout.close()
            if not holder.stdin.closed:
                holder.stdin.close()


# --- cursors -------------------------------------------------------------------------


def test_a_read_from_a_cursor_returns_only_what_was_appended_since(kit) -> None:
    store = kit.store
    create(store, "r1", 1)
    first = store.read("r1")
    assert store.read("r1", after=first.cursor).records == []
    assert store.read("r1", after=first.cursor).cursor == first.cursor
    with store.writer("r1") as w:
        w.append_many(steps(2, "b"))
        end = w.cursor
    more = store.read("r1", after=first.cursor)
    assert [r.seq for r in more.records] == list(range(5, 11))
    assert more.records[0].prev == first.cursor.head
    assert more.cursor == end == store.read("r1").cursor


def test_a_cursor_does_not_continue_into_a_replaced_journal(kit) -> None:
    create(kit.store, "r1", 2)
    create(kit.store, "r2", 3)  # longer, another chain
    seen = kit.store.read("r1").cursor
    kit.replace("r1", "r2")
    with pytest.raises(JournalReplacedError):
        kit.store.read("r1", after=seen)
    assert len(kit.store.read("r1").records) == 10  # read from the start, it is simply r2's journal


def test_a_cursor_does_not_continue_into_a_cut_journal(kit) -> None:
    create(kit.store, "r1", 2)
    seen = kit.store.read("r1").cursor
    kit.cut("r1", 4)
    with pytest.raises(JournalReplacedError):
        kit.store.read("r1", after=seen)
    with kit.store.writer("r1") as w:  # cut, then grown past where the cursor was: still not the same journal
        w.append_many(steps(3, "z"))
    with pytest.raises(JournalReplacedError):
        kit.store.read("r1", after=seen)


# --- listing and changes -------------------------------------------------------------


def test_run_ids_and_changes_since_a_cursor(kit) -> None:
    store = kit.store
    assert store.run_ids() == [] and store.changes().run_ids == []
    for run_id in ("b", "a", "c"):
        create(store, run_id)
    everything = store.changes()
    assert store.run_ids() == ["a", "b", "c"] and everything.run_ids == ["a", "b", "c"]
    assert store.changes(everything.cursor).run_ids == []
    with store.writer("b") as w:
        w.append(Transition(trigger="go", source="a", dest="b"))
    create(store, "d")
    later = store.changes(everything.cursor)
    assert later.run_ids == ["b", "d"]
    assert store.changes(later.cursor).run_ids == []


def test_watch_hints_at_each_run_that_changes(kit) -> None:
    create(kit.store, "r1")
    hinted: set[str] = set()
    lock = threading.Lock()

    def on_change(run_id: str) -> None:
        with lock:
            hinted.add(run_id)

    watch = kit.store.watch(on_change)
    try:
        assert watch.alive()
        with kit.store.writer("r1") as w:
            w.append(Transition(trigger="go", source="a", dest="b"))
        create(kit.store, "r2")
        wait_for(lambda: {"r1", "r2"} <= hinted, timeout=10, what="hints for r1 and r2")
    finally:
        watch.stop()
    assert not watch.alive()


# --- following, side files, ids ------------------------------------------------------


def test_follow_yields_the_exact_lines_then_the_new_ones(kit) -> None:
    create(kit.store, "r1", 1)
    got = []
    stop = threading.Event()

    def follow() -> None:
        for line, record in kit.store.follow("r1", poll_interval=0.01, stop=stop.is_set):
            got.append((line, record))

    reader = threading.Thread(target=follow)
    reader.start()
    try:
        wait_for(lambda: len(got) == 4, timeout=10, what="the existing records")
        with kit.store.writer("r1") as w:
            w.append_many(steps(1, "b"))
        wait_for(lambda: len(got) == 7, timeout=10, what="the new records")
    finally:
        stop.set()
        reader.join(10)
    assert [encode(record) for _, record in got] == [line for line, _ in got]
    assert [encode(r) for r in kit.store.read("r1").records] == [line for line, _ in got]


def test_side_files_are_published_replaced_fetched_and_withdrawn(kit) -> None:
    store = kit.store
    assert store.fetch("escalations", "r1.json") is None
    where = store.publish("escalations", "r1.json", b'{"seq": 1}\n')
    assert where == store.locate("escalations", "r1.json")
    assert store.publish("escalations", "r1.json", b'{"seq": 2}\n') == where
    assert store.fetch("escalations", "r1.json") == b'{"seq": 2}\n'
    store.withdraw("escalations", "r1.json")
    store.withdraw("escalations", "r1.json")  # withdrawing what is gone is not an error
    assert store.fetch("escalations", "r1.json") is None


def test_a_side_file_published_without_sync_is_read_back_at_once(kit) -> None:
    """Seal side files (journal.seal) are published atomically but not fsync'd."""
    where = kit.store.publish("seals", "r1.json", b'{"seq": 6}\n', sync=False)
    assert where == kit.store.locate("seals", "r1.json")
    kit.store.publish("seals", "r1.json", b'{"seq": 9}\n', sync=False)
    assert kit.store.fetch("seals", "r1.json") == b'{"seq": 9}\n'


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", "x" * 129, "a..b"])
def test_unsafe_run_ids_are_refused_everywhere(kit, bad: str) -> None:
    store = kit.store
    for call in (lambda: store.writer(bad, create=True), lambda: store.read(bad),
                 lambda: store.exists(bad), lambda: store.publish("escalations", bad, b"x")):
        with pytest.raises(InvalidRunIdError):
            call()


def test_reading_a_run_that_does_not_exist_names_it(kit) -> None:
    with pytest.raises(JournalNotFoundError, match="no journal for run 'ghost'"):
        kit.store.read("ghost")
    with pytest.raises(JournalNotFoundError):
        kit.store.verify("ghost")
