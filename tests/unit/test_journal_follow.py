"""follow: existing records, then new ones; partial lines wait for their newline.

The follower calls `stop()` once per poll, after yielding what it found: the tests use
that hook to act between polls, so nothing depends on sleeping.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from journal import (
    CorruptJournalError,
    FileStore,
    JournalError,
    StepStarted,
    Transition,
    encode,
    follow,
    follow_lines,
)

from damage import cut_at
from journal_builders import run_started


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    store = FileStore(tmp_path)
    with store.writer("r1", create=True) as w:
        w.append_many([run_started(), StepStarted(state="a", attempt=1, idempotency_key="k")])
    return store


class Polls:
    """A `stop` callable that runs `actions[n]` on its n-th call and gives up after a deadline."""

    def __init__(self, *actions, deadline: float = 10.0) -> None:
        self.actions = list(actions)
        self.calls = 0
        self.deadline = time.monotonic() + deadline

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls <= len(self.actions) and self.actions[self.calls - 1]:
            self.actions[self.calls - 1]()
        return time.monotonic() > self.deadline


def test_existing_records_then_stop(store: FileStore) -> None:
    records = list(follow(store.path("r1"), stop=lambda: True))
    assert [r.seq for r in records] == [1, 2]


def test_new_records_are_yielded_as_they_are_appended(store: FileStore) -> None:
    def append() -> None:
        with store.writer("r1") as w:
            w.append(Transition(trigger="ok", source="a", dest="b"))

    stream = follow(store.path("r1"), poll_interval=0.001, stop=Polls(None, append))
    assert [next(stream).seq for _ in range(3)] == [1, 2, 3]


def test_a_line_written_in_two_pieces_is_yielded_once_complete(store: FileStore) -> None:
    path = store.path("r1")
    line = encode(Transition(seq=3, ts="2026-11-27T09:41:03.000000Z", prev="x" * 64,
                             trigger="ok", source="a", dest="b"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, line[:20])
    polls = Polls(None, None, lambda: os.write(fd, line[20:] + b"\n"))
    stream = follow_lines(path, poll_interval=0.001, stop=polls)
    assert [next(stream)[1].seq for _ in range(2)] == [1, 2]
    raw, record = next(stream)
    os.close(fd)
    assert raw == line and record.seq == 3 and polls.calls >= 3  # seen only after the rest arrived


def test_a_torn_line_cut_by_recovery_and_replaced_is_read_fresh(store: FileStore) -> None:
    path = store.path("r1")
    with open(path, "ab") as f:
        f.write(b'{"type":"step_succeeded","seq":3,"ts":"20')  # a crash mid-write

    def recover_and_append() -> None:
        with store.writer("r1") as w:
            assert w.recovered_bytes > 0
            w.append(Transition(trigger="recovered", source="a", dest="b"))

    stream = follow(path, poll_interval=0.001, stop=Polls(None, recover_and_append))
    records = [next(stream) for _ in range(3)]
    assert records[2].trigger == "recovered" and records[2].seq == 3


def test_damage_is_raised_after_the_good_records(store: FileStore) -> None:
    with open(store.path("r1"), "ab") as f:
        f.write(b"not json\n")
    stream = follow(store.path("r1"), stop=lambda: True)
    assert [next(stream).seq, next(stream).seq] == [1, 2]
    with pytest.raises(CorruptJournalError) as info:
        next(stream)
    assert info.value.line == 3


def test_a_journal_that_shrinks_or_is_replaced_stops_the_follower(store: FileStore) -> None:
    path = store.path("r1")
    size = path.stat().st_size
    stream = follow(path, poll_interval=0.001, stop=Polls(None, lambda: cut_at(path, size - 5)))
    next(stream), next(stream)
    with pytest.raises(JournalError, match="shrank"):
        next(stream)

    other = path.with_name("other")
    other.write_bytes(b"")
    stream = follow(path, poll_interval=0.001, stop=Polls(lambda: os.replace(other, path)))
    with pytest.raises(JournalError, match="replaced"):
        list(stream)


def test_a_missing_journal_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no such journal"):
        next(follow(tmp_path / "nope.jsonl"))
