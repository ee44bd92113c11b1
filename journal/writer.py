"""Append records to one run's journal: one writer, one `os.write` per batch, fsync first.

Opening takes an exclusive `flock` on the journal's own descriptor (the kernel drops it
when the process dies), cuts off a torn last line left by a crash, and reads only the
file's end to learn the next `seq` and `prev`. `append` returns only once the record is
on disk (fdatasync), so the caller may act on it. After any write or fsync error the
writer refuses further appends: what is on disk is unknown until the journal is reopened
(retrying an fsync can report success for data the kernel dropped).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from journal.errors import JournalLockedError, JournalNotFoundError, JournalWriteError
from journal.reader import line_hash, tail_state
from journal.records import Record, encode
from journal.store import Cursor, Durability

# Called with the seconds each batch's fdatasync took, if set: a supervisor's worker sets it
# to report fsync latency to the supervisor's metrics (engine.supervise.worker).
on_sync: Callable[[float], None] | None = None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def fsync_dir(path: Path) -> None:
    """Make a new or renamed directory entry durable (fsync(2): the file's fsync is not enough)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def chain(records: Sequence[Record], last_seq: int, last_hash: str,
          clock: Callable[[], str]) -> tuple[list[bytes], int, str]:
    """Number and chain `records` after (last_seq, last_hash), time-stamp those without a `ts`,
    and encode them: their lines (without newlines), and the new last seq and hash. Every
    store writes exactly these bytes, so the chain is the same wherever a journal lives."""
    seq, prev = last_seq, last_hash
    lines = []
    for record in records:
        seq += 1
        record.seq = seq
        record.prev = prev
        if not record.ts:
            record.ts = clock()
        line = encode(record)
        prev = line_hash(line)
        lines.append(line)
    return lines, seq, prev


class JournalWriter:
    """The single writer of one journal file. Use as a context manager or call `close()`.

    Its fields are the open file's (descriptor, inode, size), the chain's head (last_seq,
    last_hash), what opening found (created, recovered_bytes) and an earlier failure:
    each is read on the append path or by callers, so they stay plain attributes.
    """

    def __init__(
        self,
        path: Path,
        run_id: str,
        *,
        create: bool = False,
        durability: Durability = "fsync",
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.durability = durability
        self._clock = clock
        self._broken: str | None = None
        self.created = False
        self.recovered_bytes = 0  # size of the torn tail cut off on open
        self._fd = self._open(create)
        try:
            self._inode = os.fstat(self._fd).st_ino
            self._lock()
            self._recover()
        except BaseException:
            self.close()
            raise

    def _open(self, create: bool) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        if create:
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            else:
                self.created = True
                try:
                    fsync_dir(self.path.parent)  # the new entry is durable before any record counts
                except BaseException:
                    os.close(fd)
                    raise
                return fd
        try:
            return os.open(self.path, flags)
        except FileNotFoundError as exc:
            raise JournalNotFoundError(self.path, self.run_id) from exc

    def _lock(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise JournalLockedError(self.path, self.run_id) from exc

    def _recover(self) -> None:
        size = os.fstat(self._fd).st_size
        end, self.last_seq, self.last_hash = tail_state(self._fd, size, self.path)
        if end < size:
            # A crash mid-write left a partial line: it never counted, so cut it off.
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
            self.recovered_bytes = size - end
        self.size = end

    def append(self, record: Record) -> Record:
        """Write one record and make it durable. Fills in `seq`, `prev` and (if empty) `ts`."""
        return self.append_many((record,))[0]

    def append_many(self, records: Sequence[Record]) -> Sequence[Record]:
        """Write records as one batch with one fsync: all are durable when this returns.

        A crash mid-batch leaves a prefix of it (complete lines survive, a torn one is cut),
        so a batch must be a sequence the engine can resume from at any line.
        """
        if self._broken:
            raise JournalWriteError(f"{self.path}: writer unusable after an earlier error ({self._broken}); "
                                    "reopen the journal")
        if not records:
            return records  # an empty batch must not write a bare newline (an empty line is corrupt)
        lines, seq, prev = chain(records, self.last_seq, self.last_hash, self._clock)
        payload = b"\n".join(lines) + b"\n"
        try:
            self._write_all(payload)
            if self.durability == "fsync":
                began = time.perf_counter()
                os.fdatasync(self._fd)
                if on_sync is not None:
                    on_sync(time.perf_counter() - began)
        except OSError as exc:
            self._broken = f"{type(exc).__name__}: {exc}"
            raise JournalWriteError(f"{self.path}: append failed ({exc}); the run must be reopened from disk") from exc
        self.last_seq, self.last_hash = seq, prev
        self.size += len(payload)
        return records

    @property
    def cursor(self) -> Cursor:
        """Just after the last durable record: what a read up to here returns as its cursor."""
        return Cursor(self.last_seq, self.last_hash, (self._inode, self.size))

    def _write_all(self, payload: bytes) -> None:
        view = memoryview(payload)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
