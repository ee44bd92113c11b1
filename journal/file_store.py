"""The file store: one JSON Lines journal per run under `<home>/runs/`, side files beside.

    <home>/runs/<run_id>.jsonl        a run's journal (journal/FORMAT.md)
    <home>/archive/<run_id>.jsonl.gz  an archived journal: the same bytes, gzip'd
    <home>/<kind>/<name>              side files, e.g. escalations/<run_id>.json

One writer per run is an exclusive `flock` on the journal's descriptor (journal.writer).
A cursor's position is (inode, byte offset after the last complete line): a read from
it checks the file is the same one, is not shorter, and that its next line chains to
the cursor's head. `changes` compares each journal's size with the one seen at the last
call; `watch` is inotify (journal.file_watch, only imported when used).

Archiving moves a finished journal, holding its writer, into archive/ (journal.file_archive).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from journal.durable import own_tmp, publish
from journal.errors import JournalError, JournalNotFoundError
from journal.file_archive import FileArchive, make_dirs
from journal.follow import follow_lines
from journal.reader import read
from journal.records import AnyRecord
from journal.store import RUN_ID_PATTERN, Changes, Chunk, Cursor, Durability, Watch, check_run_id
from journal.verify import VerifyResult, verify
from journal.writer import JournalWriter, fsync_dir

SUFFIX = ".jsonl"
ARCHIVED = ".jsonl.gz"
CHUNK = 1 << 20  # bytes read at a time while compressing a journal


class FileStore:
    """Journals as `<root>/runs/<run_id>.jsonl`; side files as `<root>/<kind>/<name>`."""

    def __init__(self, root: Path, *, durability: Durability = "fsync") -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self._prefix = os.path.join(self.runs_dir, "")  # a str, joined once: Path.__fspath__ per call adds up
        self.durability = durability
        self.location = str(self.runs_dir)
        self._archive = FileArchive(self.root / "archive", self.runs_dir, durability)
        self.timers = None  # one supervisor per home: its agenda keeps the deadlines (journal.timers)

    def path(self, run_id: str) -> Path:
        """The journal's file (raises InvalidRunIdError for an id that is no safe name)."""
        return self.runs_dir / f"{check_run_id(run_id)}{SUFFIX}"

    def where(self, run_id: str) -> str:
        return self._prefix + check_run_id(run_id) + SUFFIX  # a str: cheaper than a Path

    def run_ids(self) -> list[str]:
        return sorted(self._sizes())

    def exists(self, run_id: str) -> bool:
        return self.path(run_id).exists()

    def writer(self, run_id: str, *, create: bool = False) -> JournalWriter:
        """The run's single writer (raises JournalLockedError if another process holds it)."""
        path = self.path(run_id)
        if create:
            if not self.runs_dir.is_dir():
                make_dirs(self.runs_dir)  # the home itself, too, is created with its first journal
            if os.path.exists(self._archive.path(run_id)):
                raise JournalError(f"{self._archive.path(run_id)}: run '{run_id}' is archived; "
                                   "choose another id")
        writer = JournalWriter(path, run_id, create=create, durability=self.durability)
        if os.fstat(writer.fileno()).st_nlink == 0:  # archived between our open and our lock
            writer.close()
            raise JournalNotFoundError(path, run_id)
        return writer

    def held(self, run_id: str) -> bool:
        """Whether a writer holds the journal's exclusive `flock` now (the kernel drops it
        when the writer dies). Read from /proc/locks, which takes nothing: a probe that
        tried the lock itself would, for a microsecond, refuse a writer opening the run."""
        try:
            st = os.stat(self.where(run_id))
        except FileNotFoundError:
            return False
        try:
            with open("/proc/locks", "rb") as f:
                table = f.read()
        except OSError:
            return self._held_by_probe(run_id)  # no /proc: try the lock (shared, dropped at once)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} ".encode()
        return any(b" FLOCK " in line and b" WRITE " in line and b"->" not in line and key in line
                   for line in table.splitlines())

    def _held_by_probe(self, run_id: str) -> bool:
        try:
            fd = os.open(self.where(run_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the probe's own lock, if it got it
        return False

    def read(self, run_id: str, after: Cursor | None = None) -> Chunk:
        path = self.where(run_id)  # a plain string: building a Path costs as much as reading a small journal
        try:
            if after is None or after.position is None:
                contents = read(path)
            else:
                inode, offset = after.position
                contents = read(path, offset=offset, last_seq=after.seq, last_hash=after.head, inode=inode)
        except FileNotFoundError as exc:
            raise JournalNotFoundError(path, run_id) from exc
        cursor = Cursor(contents.last_seq, contents.last_hash, (contents.inode, contents.end_offset))
        return Chunk(contents.records, cursor, contents.torn_bytes)

    def changes(self, since: dict[str, int] | None = None) -> Changes:
        sizes = self._sizes()
        seen = since or {}
        changed = [run_id for run_id, size in sizes.items() if size > seen.get(run_id, -1)]
        return Changes(sorted(changed), sizes)

    def _sizes(self) -> dict[str, int]:
        """Every journal's size, by run id (names that are no valid run id are not journals)."""
        sizes = {}
        try:
            entries = list(os.scandir(self.runs_dir))
        except FileNotFoundError:
            return {}
        for entry in entries:
            name = entry.name
            if not name.endswith(SUFFIX):
                continue
            run_id = name[: -len(SUFFIX)]
            if not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
                continue
            try:
                sizes[run_id] = entry.stat().st_size
            except FileNotFoundError:
                continue  # removed since it was listed
        return sizes

    def watch(self, on_change: Callable[[str], None]) -> Watch:
        from journal.file_watch import watch_journals  # inotify (watchdog): only for those who watch

        self.runs_dir.mkdir(parents=True, exist_ok=True)
        return watch_journals(self.runs_dir, SUFFIX, on_change)

    def follow(self, run_id: str, *, poll_interval: float = 0.1,
               stop: Callable[[], bool] | None = None) -> Iterator[tuple[bytes, AnyRecord]]:
        path = self.path(run_id)
        if not path.is_file():
            raise JournalNotFoundError(path, run_id)
        return follow_lines(path, poll_interval=poll_interval, stop=stop)

    def verify(self, run_id: str, *, head: str | None = None) -> VerifyResult:
        path = self.path(run_id)
        if not path.is_file():
            raise JournalNotFoundError(path, run_id)
        return verify(path, run_id=run_id, head=head)

    # --- side files ---------------------------------------------------------------------

    def locate(self, kind: str, name: str) -> str:
        return str(self._side(kind, name))

    def publish(self, kind: str, name: str, data: bytes, *, sync: bool = True) -> str:
        target = self._side(kind, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        return str(publish(own_tmp(target), target, data, sync=sync))

    def fetch(self, kind: str, name: str) -> bytes | None:
        try:
            return self._side(kind, name).read_bytes()
        except FileNotFoundError:
            return None

    def withdraw(self, kind: str, name: str) -> None:
        target = self._side(kind, name)
        try:
            os.unlink(target)
        except FileNotFoundError:
            return
        fsync_dir(target.parent)

    def tidy_copies(self, kind: str) -> list[str]:
        return []  # the side files are the files: no copies to tidy

    def reserve(self, writers: int) -> None:
        return None  # a writer is a file and its lock: nothing pooled

    # --- the archive (journal.file_archive) --------------------------------------------------

    def archive(self, run_id: str, *, head: str, on_step: Callable[[str], None] | None = None) -> str:
        with self.writer(run_id) as writer:  # nobody appends while it moves
            return self._archive.move(writer, run_id, head=head, on_step=on_step)

    def archived_ids(self) -> list[str]:
        return self._archive.ids()

    def archived_lines(self, run_id: str) -> list[tuple[bytes, AnyRecord]]:
        return self._archive.lines(run_id)

    def verify_archived(self, run_id: str, *, head: str | None = None) -> VerifyResult:
        return self._archive.verify(run_id, head=head)

    def _side(self, kind: str, name: str) -> Path:
        check_run_id(kind)  # both become path parts: the same safe-name rule as run ids
        check_run_id(name)
        return self.root / kind / name

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"
