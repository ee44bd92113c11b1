"""verify: editing, deleting, reordering or flipping any byte fails at a named line; a torn tail does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from journal import (
    GENESIS,
    FileStore,
    RunFinished,
    StepFailed,
    StepStarted,
    StepSucceeded,
    Transition,
    TriggerReceived,
    Waiting,
    verify,
)

from damage import flip_byte, lines_of, write_lines
from journal_builders import run_started


def run_records(run_id: str = "r1") -> list:
    return [
        run_started(run_id),
        StepStarted(state="draft", attempt=1, idempotency_key=f"{run_id}/draft/1"),
        StepFailed(state="draft", attempt=1, error="503", error_type="BillingUnavailable", duration_ms=120.0),
        StepStarted(state="draft", attempt=2, idempotency_key=f"{run_id}/draft/1"),
        StepSucceeded(state="draft", attempt=2, trigger="ok", data={"summary": "fine"}, duration_ms=40.0),
        Transition(trigger="ok", source="draft", dest="review"),
        Waiting(state="review", triggers=["approve", "reject"], approvers=["alice"]),
        TriggerReceived(trigger="approve", state="review", by="alice", comment="ok"),
        Transition(trigger="approve", source="review", dest="done"),
        RunFinished(state="done"),
    ]


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    store = FileStore(tmp_path)
    with store.writer("r1", create=True) as w:
        w.append_many(run_records())
    return store.path("r1")


def test_an_intact_journal_verifies(journal: Path) -> None:
    result = verify(journal, run_id="r1")
    assert result.ok and result.records == 10 and result.line is None and not result.torn
    assert str(result) == "ok (10 records)"
    assert verify(journal, head=result.last_hash).ok


@pytest.mark.parametrize("number", range(1, 11))
def test_editing_a_line_fails_at_it_or_at_the_link_after_it(journal: Path, number: int) -> None:
    head = verify(journal).last_hash
    lines = lines_of(journal)
    lines[number - 1] = lines[number - 1].replace(b'"ts":"2', b'"ts":"3', 1)  # still a valid record
    write_lines(journal, lines)
    result = verify(journal)
    if number < 10:
        assert not result.ok and result.line == number + 1
        assert f"hash chain broken (prev does not match line {number}" in result.problem
    else:
        assert result.ok  # the chain cannot protect its own last line ...
    anchored = verify(journal, head=head)  # ... an anchored head can
    assert not anchored.ok and anchored.line == min(number + 1, 10)


@pytest.mark.parametrize("number", range(1, 11))
def test_deleting_a_line_fails_at_that_line(journal: Path, number: int) -> None:
    head = verify(journal).last_hash
    lines = lines_of(journal)
    del lines[number - 1]
    write_lines(journal, lines)
    result = verify(journal, head=head)
    assert not result.ok and result.line == min(number, 9)
    if number < 10:
        assert "seq" in result.problem and not verify(journal).ok
    else:
        assert "head" in result.problem and verify(journal).ok  # cut at a line boundary: needs the head


@pytest.mark.parametrize("number", range(1, 10))
def test_swapping_two_lines_fails_at_the_first(journal: Path, number: int) -> None:
    lines = lines_of(journal)
    lines[number - 1], lines[number] = lines[number], lines[number - 1]
    write_lines(journal, lines)
    result = verify(journal)
    assert not result.ok and result.line == number
    assert f"seq {number + 1} where {number} was expected" in result.problem


def test_flipping_any_byte_fails_verify(journal: Path) -> None:
    data = journal.read_bytes()
    head = verify(journal).last_hash
    last_line_start = data.rstrip(b"\n").rfind(b"\n") + 1
    for offset in range(len(data)):
        flip_byte(journal, offset)
        assert not verify(journal, head=head).ok, offset
        if offset < last_line_start:
            result = verify(journal)
            assert not result.ok and result.line <= data.count(b"\n", 0, offset) + 2, offset
        flip_byte(journal, offset)  # and back
    assert journal.read_bytes() == data and verify(journal, head=head).ok


def test_first_record_must_be_run_started_with_genesis_prev(tmp_path: Path, journal: Path) -> None:
    lines = lines_of(journal)
    write_lines(journal, [lines[0].replace(GENESIS.encode(), b"1" * 64)] + lines[1:])
    result = verify(journal)
    assert (result.ok, result.line) == (False, 1) and "GENESIS" in result.problem

    other = FileStore(tmp_path / "other")
    with other.writer("x", create=True) as w:
        w.append(Transition(trigger="ok", source="a", dest="b"))
    result = verify(other.path("x"))
    assert (result.ok, result.line) == (False, 1) and "not 'run_started'" in result.problem


def test_a_second_run_started_and_a_foreign_run_fail(journal: Path) -> None:
    assert "where run 'r2' was expected" in verify(journal, run_id="r2").problem
    store = FileStore(journal.parent.parent)
    with store.writer("r1") as w:
        w.append(run_records()[0])
    result = verify(journal)
    assert (result.ok, result.line) == (False, 11) and "second run_started" in result.problem


def test_a_time_that_is_not_utc_fails(journal: Path) -> None:
    lines = lines_of(journal)
    start = lines[0].index(b'"ts":"') + 6
    end = lines[0].index(b'"', start)
    lines[0] = lines[0][:start] + b"2026-11-27T10:41:03+01:00" + lines[0][end:]
    write_lines(journal, lines)
    assert "not UTC" in verify(journal).problem


def test_a_torn_tail_is_reported_as_a_crash_not_a_failure(journal: Path) -> None:
    with open(journal, "ab") as f:
        f.write(b'{"type":"transition","se')
    result = verify(journal)
    assert result.ok and result.records == 10 and result.torn_bytes == 24
    assert str(result) == "ok (10 records); torn tail (24 bytes, a crash mid-write; cut on next open)"


def test_an_empty_journal_verifies_with_no_records(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"")
    assert verify(path).ok and verify(path).records == 0


@pytest.mark.parametrize("definition", [b'{"name":"evil"}', b'"oops"'])
def test_a_pinned_definition_that_does_not_match_its_hash_fails_at_line_1(journal: Path, definition: bytes) -> None:
    data = journal.read_bytes()
    journal.write_bytes(data.replace(b'"definition":{"name":"m"}', b'"definition":' + definition, 1))
    result = verify(journal)
    assert not result.ok and result.line == 1
    assert "definition" in result.problem
