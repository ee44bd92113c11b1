"""The file store's archive: finished journals, gzip'd, under `<home>/archive/`.

    <home>/archive/<run_id>.jsonl.gz  an archived journal: the same bytes, gzip'd (mtime 0)

Archiving a journal (its writer held by the caller): write the gzip'd bytes under a
temporary name, fsync, rename into archive/, fsync archive/, THEN unlink the journal and
fsync runs/. A crash leaves it in runs/, or in both (archiving again finishes), never in
neither. A writer that opened the journal just before it was unlinked finds it gone once
it holds the lock (no link left), so nothing is ever appended to an archived journal.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path

from journal.errors import CorruptJournalError, JournalError, JournalNotFoundError
from journal.reader import decode_line
from journal.records import AnyRecord
from journal.store import RUN_ID_PATTERN, Durability, check_run_id
from journal.verify import VerifyResult, require_run_end, verify_lines
from journal.writer import JournalWriter, fsync_dir

ARCHIVED = ".jsonl.gz"
CHUNK = 1 << 20  # bytes read at a time while compressing a journal


class FileArchive:
    """One home's archive folder, beside its runs/."""

    def __init__(self, folder: Path, runs_dir: Path, durability: Durability) -> None:
        self.folder, self.runs_dir, self.durability = folder, runs_dir, durability

    def path(self, run_id: str) -> Path:
        return self.folder / f"{check_run_id(run_id)}{ARCHIVED}"

    def move(self, writer: JournalWriter, run_id: str, *, head: str,
             on_step: Callable[[str], None] | None = None) -> str:
        """Move the journal `writer` holds into the archive (see the module's docstring)."""
        step = on_step or (lambda _name: None)
        target = self.path(run_id)
        if writer.last_hash != head:
            raise JournalError(f"{writer.path}: run '{run_id}' changed since it was verified (its chain "
                               f"no longer ends at {head[:12]}…); verify it again")
        if target.exists():  # a crash came after an earlier archive's rename: finish that one
            lines, error = _decompress(target)
            if error is not None or not _starts_with(writer, b"".join(lines)):
                raise JournalError(f"{target}: run '{run_id}' is archived with another journal than "
                                   f"{writer.path}; compare them, keep one and remove the other")
        if not self.folder.is_dir():
            make_dirs(self.folder)
        for stale in self.folder.glob(f".{target.name}.*.tmp"):  # left by a crash mid-write
            stale.unlink()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        self._compress(writer, tmp)
        step("archive_written")
        os.replace(tmp, target)
        self._sync_dir(self.folder)
        step("archive_renamed")
        os.unlink(writer.path)
        step("journal_removed")
        self._sync_dir(self.runs_dir)
        return str(target)

    def _compress(self, writer: JournalWriter, tmp: Path) -> None:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:  # mtime 0: same bytes, same file
                offset = 0
                while offset < writer.size:
                    chunk = os.pread(writer.fileno(), min(CHUNK, writer.size - offset), offset)
                    packed.write(chunk)
                    offset += len(chunk)
            raw.flush()
            if self.durability == "fsync":
                os.fsync(raw.fileno())

    def _sync_dir(self, folder: Path) -> None:
        if self.durability == "fsync":
            fsync_dir(folder)

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        ids = (name[: -len(ARCHIVED)] for name in names if name.endswith(ARCHIVED))
        return sorted(i for i in ids if RUN_ID_PATTERN.match(i) and ".." not in i)

    def lines(self, run_id: str) -> list[tuple[bytes, AnyRecord]]:
        path = self.path(run_id)
        lines, error = _decompress(path, run_id)
        if error is not None:
            raise JournalError(f"{path}: cannot be read back after line {len(lines)} ({error}); "
                               f"run 'ratchet verify {run_id}'")
        found = []
        for number, raw in enumerate(lines, 1):
            if not raw.endswith(b"\n"):
                raise CorruptJournalError(path, number, "an archived journal ends mid-line")
            found.append((raw[:-1], decode_line(path, number, raw[:-1])))
        return found

    def verify(self, run_id: str, *, head: str | None = None) -> VerifyResult:
        path = self.path(run_id)
        lines, error = _decompress(path, run_id)
        result = verify_lines(lines, path, run_id=run_id, head=None if error else head)
        if result.ok and (error is not None or result.torn):
            why = f"cannot be read back ({error})" if error is not None else "ends mid-line"
            return VerifyResult(path, False, result.records, result.records + 1,
                                f"the archived journal {why}: it is damaged", last_hash=result.last_hash)
        return require_run_end(result, lines)  # only ended runs are archived


def make_dirs(folder: Path) -> None:
    """Create `folder` and its missing parents, each new entry made durable (fsync of its parent)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            new.mkdir()
        fsync_dir(new.parent)


def _decompress(path: Path, run_id: str = "") -> tuple[list[bytes], Exception | None]:
    """An archived journal's lines (each with its newline), and the error that stopped the
    reading early, if any (a damaged or cut gzip file): what came before it is returned."""
    lines: list[bytes] = []
    try:
        with gzip.open(path, "rb") as f:
            for line in f:
                lines.append(line)
    except FileNotFoundError as exc:
        raise JournalNotFoundError(path, run_id) from exc
    except (OSError, EOFError, zlib.error) as exc:
        return lines, exc
    return lines, None


def _starts_with(writer: JournalWriter, prefix: bytes) -> bool:
    """Does the writer's journal begin with exactly these bytes?"""
    return len(prefix) <= writer.size and os.pread(writer.fileno(), len(prefix), 0) == prefix

