"""Read a journal back: complete lines decoded with one reused decoder, a torn tail reported.

A torn last line (no trailing newline) means the writer died mid-write: it is reported
in `Contents.torn_bytes` and never decoded. A complete line that does not decode, or
whose `seq` does not follow, is corruption: `CorruptJournalError` with file and line.
The hash chain is checked by `journal.verify`, not here, to keep replay fast.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from journal.errors import CorruptJournalError
from journal.records import GENESIS, AnyRecord, decode


@dataclass
class Contents:
    """What a read found: the records, where they end, and any torn tail after them."""

    records: list[AnyRecord] = field(default_factory=list)
    end_offset: int = 0  # byte offset just after the last complete line
    last_seq: int = 0
    last_hash: str = GENESIS  # sha256 of the last complete line: the next record's `prev`
    torn_bytes: int = 0  # bytes after the last newline (a crash mid-write)


def line_hash(line: bytes) -> str:
    """The chain hash of one line (without its newline)."""
    return hashlib.sha256(line).hexdigest()


def read(path: Path, *, offset: int = 0, last_seq: int = 0, last_hash: str | None = None) -> Contents:
    """Read complete records from `offset` on (0: the whole file).

    To continue an earlier read, pass its `end_offset`, `last_seq` and `last_hash`.
    """
    with open(path, "rb") as f:
        if offset:
            f.seek(offset)
        data = f.read()
    return parse(path, data, offset=offset, last_seq=last_seq, last_hash=last_hash)


def parse(path: Path, data: bytes, *, offset: int = 0, last_seq: int = 0, last_hash: str | None = None) -> Contents:
    """Decode the complete lines of `data`, which starts at byte `offset` of `path`."""
    end = data.rfind(b"\n") + 1
    contents = Contents(end_offset=offset + end, torn_bytes=len(data) - end, last_seq=last_seq)
    if end == 0:
        if last_hash is not None:
            contents.last_hash = last_hash
        return contents
    lines = data[: end - 1].split(b"\n")
    records = contents.records
    append = records.append
    expected = last_seq + 1
    for i, line in enumerate(lines):
        try:
            record = decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CorruptJournalError(path, last_seq + i + 1, f"not a valid record ({exc})") from exc
        if record.seq != expected:
            raise CorruptJournalError(
                path, last_seq + i + 1, f"seq {record.seq} where {expected} was expected"
            )
        expected += 1
        append(record)
    contents.last_seq = expected - 1
    contents.last_hash = line_hash(lines[-1])
    return contents


def tail_state(fd: int, size: int, path: Path) -> tuple[int, int, str]:
    """(end of the last complete line, its seq, its hash), reading only the file's end.

    Used by the writer on open, so that opening a long journal costs one small read.
    """
    chunk = 4096
    while True:
        start = max(0, size - chunk)
        buf = os.pread(fd, size - start, start)
        end = buf.rfind(b"\n")
        begin = buf.rfind(b"\n", 0, max(end, 0)) + 1
        if start > 0 and (end == -1 or begin == 0):
            chunk *= 2  # the last complete line is longer than what we read: read more
            continue
        if end == -1:
            return 0, 0, GENESIS  # no complete line at all: everything is a torn tail
        break
    line = buf[begin:end]
    try:
        record = decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        number = _line_number(fd, start + begin)
        raise CorruptJournalError(path, number, f"not a valid record ({exc})") from exc
    return start + end + 1, record.seq, line_hash(line)


def _line_number(fd: int, offset: int) -> int:
    """1-based number of the line starting at `offset` (only for error messages)."""
    return os.pread(fd, offset, 0).count(b"\n") + 1
