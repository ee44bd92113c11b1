"""Read a journal back: complete lines decoded with one reused decoder, a torn tail reported.

A torn last line (no trailing newline) means the writer died mid-write: it is reported
in `Contents.torn_bytes` and never decoded. A complete line that does not decode, or
whose `seq` does not follow, is corruption: `CorruptJournalError` with file and line.
The hash chain is checked by `journal.verify`, not here, to keep replay fast.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from operator import attrgetter
from pathlib import Path

import msgspec

from journal.errors import CorruptJournalError, JournalReplacedError
from journal.records import GENESIS, AnyRecord, decode, decode_each


@dataclass
class Contents:
    """What a read found: the records, where they end, and any torn tail after them."""

    records: list[AnyRecord] = field(default_factory=list)
    end_offset: int = 0  # byte offset just after the last complete line
    last_seq: int = 0
    last_hash: str = GENESIS  # sha256 of the last complete line: the next record's `prev`
    torn_bytes: int = 0  # bytes after the last newline (a crash mid-write)
    inode: int = 0  # the file read (a later read from `end_offset` must find the same one)


def line_hash(line: bytes) -> str:
    """The chain hash of one line (without its newline)."""
    return hashlib.sha256(line).hexdigest()


def read(path: Path | str, *, offset: int = 0, last_seq: int = 0, last_hash: str | None = None,
         inode: int | None = None) -> Contents:
    """Read complete records from `offset` on (0: the whole file, as long as it is now).

    To continue an earlier read, pass its `end_offset`, `last_seq`, `last_hash` and
    `inode`: a file that is another file now (inode), is shorter than `offset`, or whose
    next record does not chain to `last_hash`, is not the file read before (replaced or
    edited): JournalReplacedError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if inode is not None and st.st_ino != inode:
            raise JournalReplacedError(path, last_seq, "is another file than the one read before (replaced)")
        if st.st_size < offset:
            raise JournalReplacedError(path, last_seq, f"the file shrank below byte {offset} read before "
                                       "(replaced or cut)")
        data = _read_from(fd, offset, st.st_size - offset)
    finally:
        os.close(fd)
    contents = parse(path, data, offset=offset, last_seq=last_seq, last_hash=last_hash)
    contents.inode = st.st_ino
    if offset and last_hash is not None and contents.records and contents.records[0].prev != last_hash:
        raise JournalReplacedError(path, last_seq + 1, "does not chain to the lines read before "
                                   "(the file was replaced or edited)")
    return contents


def _read_from(fd: int, offset: int, want: int) -> bytes:
    """`want` bytes from `offset`, or what is there if the file was cut meanwhile.

    Plain `os` calls: `open()` builds a buffered file object, which costs as much as the
    read itself for a journal of a few KB (replay reads thousands of them).
    """
    if want <= 0:
        return b""
    data = os.pread(fd, want, offset)
    if len(data) < want:  # a short read (huge file, or cut meanwhile): go on to what is there
        chunks = [data]
        got = len(data)
        while got < want:
            chunk = os.pread(fd, want - got, offset + got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks)
    return data


# Below this size a body's records are too few for the collector to matter, and pausing
# it costs more than it saves (measured on 20-record journals: a wash).
_GC_PAUSE_MIN_BYTES = 64 * 1024


def parse(path: Path | str, data: bytes, *, offset: int = 0, last_seq: int = 0,
          last_hash: str | None = None) -> Contents:
    """Decode the complete lines of `data`, which starts at byte `offset` of `path`."""
    # Lines with their newlines: `readlines` finds each with memchr, ~4x faster than
    # `bytes.split`, which looks at every byte. A newline is JSON whitespace: a line decodes
    # with it as without it.
    lines = BytesIO(data).readlines()
    torn = len(lines.pop()) if lines and not lines[-1].endswith(b"\n") else 0  # a line cut mid-write
    end = len(data) - torn
    if not lines:
        return Contents(end_offset=offset, last_seq=last_seq, last_hash=GENESIS if last_hash is None else last_hash,
                        torn_bytes=torn)
    if end < _GC_PAUSE_MIN_BYTES:
        records = _decode(path, lines, last_seq)
    else:
        with gc_paused():
            records = _decode(path, lines, last_seq)
    return Contents(records, offset + end, last_seq + len(records), line_hash(lines[-1][:-1]), torn)


def _decode(path: Path | str, lines: list[bytes], last_seq: int) -> list[AnyRecord]:
    records = _decode_fast(lines)
    if records is None or not _seqs_follow(records, last_seq):
        records = _decode_exact(path, lines, last_seq)  # raises, naming the line
    return records


def _decode_fast(lines: list[bytes]) -> list[AnyRecord] | None:
    """Every line decoded on its own, as `_decode_exact` does, or None if one is not a record.

    The same lines (here with their newline: JSON whitespace) and the same decoder as the
    exact path, so it accepts exactly what that path accepts; only the Python loop is gone
    (one C-level `map`), and no line numbers are kept: on failure the exact path runs
    again to say which line and why. (Decoding the whole body with `decode_lines` is
    faster alone, but it skips blank lines and accepts two records on one line, and the
    scans guarding against that cost more.)
    """
    try:
        return decode_each(lines)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _seqs_follow(records: list[AnyRecord], last_seq: int) -> bool:
    first = last_seq + 1
    return list(map(_seq_of, records)) == list(range(first, first + len(records)))


_seq_of = attrgetter("seq")


def _decode_exact(path: Path | str, lines: list[bytes], last_seq: int) -> list[AnyRecord]:
    """Line by line: slower, and the reference for what is valid; raises at the first bad line."""
    return [decode_line(path, number, line.removesuffix(b"\n")) for number, line in enumerate(lines, last_seq + 1)]


def decode_line(path: Path | str, number: int, line: bytes) -> AnyRecord:
    """The record on line `number` of `path` (its seq must be `number`), or CorruptJournalError."""
    try:
        record = decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptJournalError(Path(path), number, f"not a valid record ({exc})") from exc
    if record.seq != number:
        raise CorruptJournalError(Path(path), number, f"seq {record.seq} where {number} was expected")
    return record


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while reading many records (not refcounting).

    Decoded records hold no reference cycles, but every allocation counts toward the
    collector's thresholds: left on, it rescans the growing list (or the states folded
    from thousands of journals, engine.supervise.runs) again and again (replay ~1.5x
    slower). Re-enabled only if it was on, so nesting is harmless; garbage made meanwhile
    is collected then.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
