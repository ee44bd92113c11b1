"""The file store's own side of archiving: a writer that lost the race to an archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from journal import FileStore, JournalNotFoundError, RunFinished, Transition
from journal.writer import JournalWriter

from journal_builders import run_started


def test_a_writer_that_opened_the_journal_just_before_it_was_archived_appends_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path / "home")
    with store.writer("r1", create=True) as w:
        w.append_many([run_started("r1", definition={"name": "m", "initial": "a"}), RunFinished(state="a")])
    head = store.verify("r1").last_hash
    real_lock = JournalWriter._lock

    def archived_before_the_lock(writer: JournalWriter) -> None:
        # This writer has opened the journal; the archive runs before it takes the lock.
        monkeypatch.setattr(JournalWriter, "_lock", real_lock)
        store.archive("r1", head=head)
        real_lock(writer)

    monkeypatch.setattr(JournalWriter, "_lock", archived_before_the_lock)
    with pytest.raises(JournalNotFoundError, match="no journal for run 'r1'"):
        store.writer("r1")  # it holds a lock on a file that has no name any more: refused
    assert store.archived_ids() == ["r1"] and store.run_ids() == []
    assert [line for line, _ in store.archived_lines("r1")][-1].startswith(b'{"type":"run_finished"')
    with pytest.raises(JournalNotFoundError):  # and nobody can append afterwards either
        store.writer("r1").append(Transition(trigger="go", source="a", dest="b"))
