"""The reader's one-call decoding accepts exactly what line-by-line decoding accepts.

A real journal is edited at random — bytes inserted (newlines, spaces, commas, braces),
deleted or swapped, lines joined, split, duplicated or emptied — and `parse` must give
what a plain reference gives: every line before the last newline decoded on its own, its
seq equal to its number, the first failure named by its line with the same message, the
bytes after the last newline a torn tail.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal import CorruptJournalError, decode, to_builtins
from journal.reader import parse

from journal_builders import run_started, step_batch

PATH = Path("runs/r1.jsonl")


def journal() -> bytes:
    records = [run_started("r1")]
    for i in range(3):
        records += step_batch(f"s{i}", f"s{i + 1}", key=f"r1/s{i}/1", data={"i": i, "note": "a,b}{c"})
    prev, out = "0" * 64, []
    for seq, record in enumerate(records, 1):
        record.seq, record.prev, record.ts = seq, prev, "2026-11-30T23:00:00.000000Z"
        line = msgspec.json.encode(record)
        prev = hashlib.sha256(line).hexdigest()
        out.append(line + b"\n")
    return b"".join(out)


JOURNAL = journal()


def reference(data: bytes) -> tuple:
    *lines, tail = data.split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return ("error", number, str(CorruptJournalError(PATH, number, f"not a valid record ({exc})")))
        if record.seq != number:
            problem = f"seq {record.seq} where {number} was expected"
            return ("error", number, str(CorruptJournalError(PATH, number, problem)))
        records.append(to_builtins(record))
    return ("ok", records, len(tail))


def actual(data: bytes) -> tuple:
    try:
        contents = parse(PATH, data)
    except CorruptJournalError as exc:
        return ("error", exc.line, str(exc))
    return ("ok", [to_builtins(r) for r in contents.records], contents.torn_bytes)


@st.composite
def edited(draw: st.DrawFn) -> bytes:
    data = bytearray(JOURNAL)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "join", "split", "blank", "duplicate", "array"]))
        lines = bytes(data).split(b"\n")
        if kind == "insert":
            data[at:at] = draw(st.sampled_from([b"\n", b" ", b",", b"}", b"{", b"\n\n", b"}{", b"},{", b"\r"]))
        elif kind == "delete":
            data[at:at + draw(st.integers(1, 3))] = b""
        else:
            k = draw(st.integers(0, max(0, len(lines) - 3)))
            if kind == "join":
                lines[k:k + 2] = [lines[k] + lines[k + 1]]
            elif kind == "split":
                cut = draw(st.integers(0, len(lines[k])))
                lines[k:k + 1] = [lines[k][:cut], lines[k][cut:]]
            elif kind == "blank":
                lines.insert(k, b"")
            elif kind == "duplicate":
                lines.insert(k, lines[k])
            else:  # two records on one line as in a JSON array
                lines[k:k + 2] = [lines[k] + b"," + lines[k + 1]]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def test_the_unedited_journal_reads_whole() -> None:
    assert actual(JOURNAL) == reference(JOURNAL) and len(actual(JOURNAL)[1]) == 10


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited())
def test_an_edited_journal_reads_as_the_line_by_line_reference_reads_it(data: bytes) -> None:
    assert actual(data) == reference(data)
