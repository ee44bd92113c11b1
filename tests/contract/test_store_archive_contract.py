"""What every store must do to archive a run (journal/store.py: `archive` and its readers).

Through the interface only, on each store in conftest.KITS. Crashes in the middle of an
archive are the file store's own business: tests/faults/test_archive_kill.py.
"""

from __future__ import annotations

import pytest

from journal import JournalError, JournalLockedError, JournalNotFoundError, RunFinished, encode

from journal_builders import run_started, step_batch


def finished(store, run_id: str) -> str:
    """A run of two steps that finished; returns its chain's head."""
    with store.writer(run_id, create=True) as w:
        w.append_many([run_started(run_id), *step_batch("a", "b", key=f"{run_id}/a/1"),
                       RunFinished(state="b")])
    return store.verify(run_id).last_hash


def test_an_archived_run_leaves_the_runs_and_reads_back_line_for_line(kit) -> None:
    store = kit.store
    head = finished(store, "r1")
    finished(store, "r2")
    lines = [encode(r) for r in store.read("r1").records]
    store.archive("r1", head=head)
    assert store.run_ids() == ["r2"] and not store.exists("r1")
    assert store.changes().run_ids == ["r2"]  # a supervisor's scan never sees it again
    assert store.archived_ids() == ["r1"]
    got = store.archived_lines("r1")
    assert [line for line, _ in got] == lines and [encode(r) for _, r in got] == lines
    result = store.verify_archived("r1", head=head)
    assert result.ok and result.records == 5 and result.last_hash == head
    assert not store.verify_archived("r1", head="f" * 64).ok
    with pytest.raises(JournalNotFoundError):
        store.read("r1")
    with pytest.raises(JournalNotFoundError):
        store.writer("r1")


def test_an_archived_id_cannot_start_a_new_run(kit) -> None:
    store = kit.store
    store.archive("r1", head=finished(store, "r1"))
    with pytest.raises(JournalError, match="run 'r1' is archived"):
        store.writer("r1", create=True)
    assert store.run_ids() == [] and store.archived_ids() == ["r1"]


def test_a_journal_that_changed_since_it_was_verified_is_not_archived(kit) -> None:
    store = kit.store
    head = finished(store, "r1")
    with store.writer("r1") as w:  # e.g. a refused trigger journaled after the verify
        w.append(RunFinished(state="b"))
    with pytest.raises(JournalError, match="changed since it was verified"):
        store.archive("r1", head=head)
    assert store.run_ids() == ["r1"] and store.archived_ids() == []


def test_a_run_another_writer_holds_is_not_archived(kit) -> None:
    store = kit.store
    head = finished(store, "r1")
    with store.writer("r1"), pytest.raises(JournalLockedError):
        store.archive("r1", head=head)
    assert store.run_ids() == ["r1"] and store.archived_ids() == []


def test_archive_readers_name_a_run_that_is_not_archived(kit) -> None:
    finished(kit.store, "r1")
    assert kit.store.archived_ids() == []
    with pytest.raises(JournalNotFoundError, match="run 'r1'"):
        kit.store.archived_lines("r1")
    with pytest.raises(JournalNotFoundError):
        kit.store.verify_archived("r1")
    with pytest.raises(JournalNotFoundError):
        kit.store.archive("ghost", head="0" * 64)
