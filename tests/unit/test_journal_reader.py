"""Reading a journal back: complete records, a torn tail reported, damage named by line."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from journal import (
    GENESIS,
    CorruptJournalError,
    FileStore,
    JournalError,
    JournalReplacedError,
    Transition,
    line_hash,
    pinned_definition,
    read,
    to_builtins,
    verify,
)

from damage import cut_at, lines_of, write_lines
from journal_builders import run_started, step_batch


def run_records(steps: int = 3, run_id: str = "r1") -> list:
    out = [run_started(run_id)]
    for i in range(steps):
        out += step_batch(f"s{i}", f"s{i + 1}", key=f"{run_id}/s{i}/1", data={"i": i}, duration_ms=1.5)
    return out


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path)


@pytest.fixture
def journal(store: FileStore) -> Path:
    with store.writer("r1", create=True) as w:
        w.append_many(run_records())
    return store.path("r1")


def test_read_returns_every_record_in_order(journal: Path) -> None:
    contents = read(journal)
    data = journal.read_bytes()
    assert [r.seq for r in contents.records] == list(range(1, 11))
    assert contents.end_offset == len(data) and contents.torn_bytes == 0
    assert contents.last_seq == 10
    assert contents.last_hash == line_hash(data.splitlines()[-1])
    assert contents.records[0].prev == GENESIS


def test_incremental_read_continues_from_an_offset(store: FileStore, journal: Path) -> None:
    first = read(journal)
    with store.writer("r1") as w:
        w.append(Transition(trigger="go", source="a", dest="b"))
    more = read(journal, offset=first.end_offset, last_seq=first.last_seq, last_hash=first.last_hash)
    assert [r.seq for r in more.records] == [11]
    assert more.records[0].prev == first.last_hash
    assert more.end_offset == journal.stat().st_size


def test_continuing_a_read_of_a_file_that_was_replaced_is_an_error(
        store: FileStore, journal: Path, tmp_path: Path) -> None:
    first = read(journal)
    other = FileStore(tmp_path / "other")
    with other.writer("r1", create=True) as w:  # another run r1: same lengths, another chain
        w.append_many(run_records(steps=4))
    journal.write_bytes(other.path("r1").read_bytes())
    with pytest.raises(CorruptJournalError, match=r":11: does not chain to the lines read before"):
        read(journal, offset=first.end_offset, last_seq=first.last_seq, last_hash=first.last_hash)
    journal.write_bytes(b"")
    with pytest.raises(CorruptJournalError, match="shrank"):
        read(journal, offset=first.end_offset, last_seq=first.last_seq, last_hash=first.last_hash)


def test_torn_tail_is_reported_then_cut_by_the_next_writer(store: FileStore, journal: Path) -> None:
    whole = journal.read_bytes()
    torn = b'{"type":"step_started","seq":11,"ts":"2026'
    with open(journal, "ab") as f:
        f.write(torn)
    contents = read(journal)
    assert len(contents.records) == 10 and contents.torn_bytes == len(torn)
    assert contents.end_offset == len(whole)

    with store.writer("r1") as w:
        assert w.recovered_bytes == len(torn) and w.last_seq == 10
        w.append(Transition(trigger="go", source="a", dest="b"))
    assert journal.read_bytes().startswith(whole)
    result = verify(journal)
    assert result.ok and result.records == 11 and not result.torn


@pytest.mark.parametrize("tail", [b"\0" * 4096, b"\xff\xfe garbage \x00\x01", b"{"])
def test_power_loss_tail_without_newline_is_torn(store: FileStore, journal: Path, tail: bytes) -> None:
    with open(journal, "ab") as f:
        f.write(tail)
    assert read(journal).torn_bytes == len(tail)
    with store.writer("r1") as w:
        assert w.recovered_bytes == len(tail)
    assert verify(journal).ok and journal.read_bytes().endswith(b"}\n")


@pytest.mark.parametrize(
    "damage, line",
    [
        (lambda lines: lines.insert(4, b""), 5),  # a blank line
        (lambda lines: lines.insert(4, b"   "), 5),  # whitespace only
        (lambda lines: lines.__setitem__(3, lines[3] + lines[4]), 4),  # two records on one line
        (lambda lines: lines.__setitem__(6, lines[6][:-9]), 7),  # a line cut short
        (lambda lines: lines.__setitem__(2, b"\0" * 50), 3),  # zeros inside the file
        (lambda lines: lines.pop(5), 6),  # a missing line: seq jumps
        (lambda lines: lines.insert(8, lines[7]), 9),  # a duplicated line
        (lambda lines: lines.__setitem__(1, lines[1].replace(b'"attempt":1', b'"attempt":"1"')), 2),
    ],
    ids=["blank", "whitespace", "two-on-a-line", "cut-short", "zeros", "missing", "duplicate", "wrong-type"],
)
def test_damage_before_the_tail_is_an_error_naming_file_and_line(journal: Path, damage, line: int) -> None:
    lines = lines_of(journal)
    damage(lines)
    write_lines(journal, lines)
    with pytest.raises(CorruptJournalError) as info:
        read(journal)
    assert info.value.line == line and info.value.path == journal
    assert str(info.value).startswith(f"{journal}:{line}: ")


def test_garbage_with_a_newline_at_the_tail_is_corruption_not_a_torn_tail(store: FileStore, journal: Path) -> None:
    with open(journal, "ab") as f:
        f.write(b"\0\0\0\n\0\0")
    with pytest.raises(CorruptJournalError) as info:
        read(journal)
    assert info.value.line == 11
    with pytest.raises(CorruptJournalError):
        store.writer("r1")  # a writer refuses to append after damage it cannot cut


def test_fast_and_exact_decoding_agree(journal: Path) -> None:
    from journal.reader import _decode_exact, _decode_fast

    lines = journal.read_bytes().splitlines(keepends=True)  # as parse passes them: each with its newline
    fast = _decode_fast(lines)
    assert fast is not None and len(fast) == len(lines) == 10
    assert [to_builtins(r) for r in fast] == [to_builtins(r) for r in _decode_exact(journal, lines, 0)]


def test_empty_journal_has_no_records(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"")
    contents = read(path)
    assert contents.records == [] and contents.last_hash == GENESIS and contents.torn_bytes == 0


def test_store_read_of_an_unknown_run_is_a_journal_error(store: FileStore) -> None:
    with pytest.raises(JournalError, match="no journal for run 'nope'"):
        store.read("nope")


# --- the one-call decoding path (reader._decode_fast) against hostile lines ------------------


def _exact_error(journal: Path, number: int, line: bytes) -> str:
    """What the line-by-line reference path says of `line` at `number`."""
    from journal.reader import decode_line

    with pytest.raises(CorruptJournalError) as info:
        decode_line(journal, number, line)
    return str(info.value)


def test_a_line_of_an_unknown_kind_is_reported_at_its_line_with_the_exact_error(
        store: FileStore, journal: Path) -> None:
    lines = lines_of(journal)
    kind = lines[5].split(b'"')[3]
    lines[5] = lines[5].replace(b'"type":"' + kind + b'"', b'"type":"teleport"', 1)
    assert lines[5].startswith(b'{"type":"teleport",')
    write_lines(journal, lines)
    with pytest.raises(CorruptJournalError) as info:
        read(journal)
    assert info.value.line == 6
    assert str(info.value) == _exact_error(journal, 6, lines[5])
    assert "teleport" in str(info.value) and "$.type" in str(info.value)
    with pytest.raises(CorruptJournalError, match=f"^{journal}:6: "):
        store.read("r1")


def _two_on_a_line_and_a_blank(lines: list[bytes]) -> None:
    lines[3:5] = [lines[3] + lines[4], b""]


def _joined_as_in_an_array_and_one_split_at_its_comma(lines: list[bytes]) -> None:
    """Lines 4-5 as `{A},{B}` on line 4, and record C over lines 5-6, cut where its first
    comma was: joined with commas, as in a JSON array, they would read as 3 good records."""
    c = lines[5]
    comma = c.index(b",")
    lines[3:6] = [lines[3] + b"," + lines[4], c[:comma], c[comma + 1:]]


def _split_at_whitespace_and_two_on_a_line(lines: list[bytes]) -> None:
    """Record 7 over lines 7-8 (a newline where JSON allows whitespace), record 8 after it:
    decoded as one stream, they would read as 2 good records."""
    c = lines[6]
    comma = c.index(b",") + 1
    lines[6:8] = [c[:comma], c[comma:] + lines[7]]


@pytest.mark.parametrize(
    "damage, line",
    [(_two_on_a_line_and_a_blank, 4), (_joined_as_in_an_array_and_one_split_at_its_comma, 4),
     (_split_at_whitespace_and_two_on_a_line, 7)],
    ids=["two-on-a-line-and-a-blank", "array-comma-and-a-split", "split-at-whitespace"],
)
def test_lines_that_hold_more_or_fewer_than_one_record_fail_at_that_line(
        journal: Path, damage, line: int) -> None:
    lines = lines_of(journal)
    count = len(lines)
    damage(lines)
    assert len(lines) == count  # the number of lines still matches the number of records
    write_lines(journal, lines)
    with pytest.raises(CorruptJournalError) as info:
        read(journal)
    assert info.value.line == line
    assert str(info.value) == _exact_error(journal, line, lines[line - 1])


@pytest.mark.parametrize("keep", range(1, 60, 3))
def test_a_last_line_cut_anywhere_is_a_torn_tail_never_decoded(journal: Path, keep: int) -> None:
    whole = read(journal)
    data = journal.read_bytes()
    last = data.rfind(b"\n", 0, len(data) - 1) + 1  # where the last line starts
    cut_at(journal, last + keep)
    contents = read(journal)
    assert contents.torn_bytes == keep and contents.end_offset == last
    assert [to_builtins(r) for r in contents.records] == [to_builtins(r) for r in whole.records[:-1]]
    assert contents.last_seq == whole.last_seq - 1
    assert contents.last_hash == whole.records[-1].prev  # the head is the line before the cut one


def test_a_line_whose_hash_does_not_chain_is_caught_where_it_was_caught_before(
        store: FileStore, journal: Path) -> None:
    """The chain is checked by verify, and where a read continues from a cursor: not on a
    full read (FORMAT.md), which the faster decoding does not change either way."""
    first = store.read("r1")
    with store.writer("r1") as w:
        w.append(Transition(trigger="go", source="a", dest="b"))
    lines = lines_of(journal)
    lines[10] = lines[10].replace(first.cursor.head.encode(), b"f" * 64)  # line 11 no longer chains
    write_lines(journal, lines)
    assert len(read(journal).records) == 11  # a full read decodes and numbers; it does not hash
    result = verify(journal)
    assert not result.ok and result.line == 11 and "chain" in result.problem
    with pytest.raises(JournalReplacedError, match="does not chain"):
        store.read("r1", after=first.cursor)


def test_two_definitions_claiming_one_hash_each_fold_to_their_own() -> None:
    """The cache of pinned definitions is found by hash but must hold the same bytes: a
    journal forging another's hash does not get that other's definition."""
    honest = run_started("a", definition={"name": "m", "initial": "one"})
    forged = run_started("b", definition={"name": "m", "initial": "two"}, definition_hash=honest.definition_hash)
    for record in (honest, forged):
        record.definition = msgspec.Raw(msgspec.json.encode(record.definition))
    assert pinned_definition(honest)["initial"] == "one"
    assert pinned_definition(forged)["initial"] == "two"
    assert pinned_definition(honest)["initial"] == "one"
