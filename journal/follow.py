"""Follow a journal like `tail -f`: yield its records, then each new one as it is appended.

Polls the file's size (stdlib only; a journal grows only by appends, so a size change is
the whole signal). Only complete lines are yielded: a partial last line is re-read from
its start on every poll until its newline arrives, so a line written in two pieces, or a
torn line that recovery cuts off and a new writer replaces, is handled without keeping
stale bytes. Complete lines that do not decode, or whose `seq` does not follow, raise
`CorruptJournalError` after every good line before them was yielded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from journal.errors import JournalError
from journal.reader import decode_line
from journal.records import AnyRecord


def follow(
    path: Path, *, poll_interval: float = 0.1, stop: Callable[[], bool] | None = None
) -> Iterator[AnyRecord]:
    """Yield the journal's records, existing then new, until `stop()` returns True.

    `stop` is checked after each batch of available records is yielded; without it,
    follow runs until the caller stops iterating.
    """
    for _line, record in follow_lines(path, poll_interval=poll_interval, stop=stop):
        yield record


def follow_lines(
    path: Path, *, poll_interval: float = 0.1, stop: Callable[[], bool] | None = None
) -> Iterator[tuple[bytes, AnyRecord]]:
    """Like `follow`, with each record's exact line bytes (without the newline)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise JournalError(f"{path}: no such journal") from exc
    try:
        inode = os.fstat(fd).st_ino
        offset = 0  # just after the last complete line yielded
        number = 0  # its line number (== its seq)
        while True:
            size = os.fstat(fd).st_size
            if size < offset:
                raise JournalError(
                    f"{path}: shrank to {size} bytes below its last complete line "
                    f"(byte {offset}) while being followed; run 'ratchet verify'"
                )
            if size > offset:
                data = os.pread(fd, size - offset, offset)
                end = data.rfind(b"\n") + 1
                for line in data[: end - 1].split(b"\n") if end else ():
                    number += 1
                    yield line, decode_line(path, number, line)
                offset += end
            if stop is not None and stop():
                return
            _check_same_file(path, inode)
            time.sleep(poll_interval)
    finally:
        os.close(fd)



def _check_same_file(path: Path, inode: int) -> None:
    """A journal is never replaced; if its name now points elsewhere, following it would lie."""
    try:
        current = os.stat(path).st_ino
    except FileNotFoundError as exc:
        raise JournalError(f"{path}: removed while being followed") from exc
    if current != inode:
        raise JournalError(f"{path}: replaced by another file while being followed")
