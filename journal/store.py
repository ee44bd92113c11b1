"""Where journals live: the small interface the engine uses, and its file implementation.

The engine only asks a store to list runs, create or open a run's single writer, read a
run back, and probe whether someone holds a run. A database-backed store (PostgreSQL
rows, row locks) would implement the same methods; `FileStore` keeps one JSON Lines file
per run under `runs/`.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Protocol

from journal.errors import JournalError
from journal.reader import Contents, read
from journal.writer import Durability, JournalWriter, fsync_dir

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SUFFIX = ".jsonl"


class InvalidRunIdError(JournalError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"invalid run id {run_id!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it is safe as a file name (no path traversal), else raise."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise InvalidRunIdError(str(run_id))
    return run_id


class Store(Protocol):
    def run_ids(self) -> list[str]: ...
    def exists(self, run_id: str) -> bool: ...
    def writer(self, run_id: str, *, create: bool = False) -> JournalWriter: ...
    def read(self, run_id: str) -> Contents: ...
    def is_locked(self, run_id: str) -> bool: ...


class FileStore:
    """Journals as `<runs_dir>/<run_id>.jsonl`."""

    def __init__(self, runs_dir: Path, *, durability: Durability = "fsync") -> None:
        self.runs_dir = Path(runs_dir)
        self.durability = durability

    def path(self, run_id: str) -> Path:
        return self.runs_dir / f"{check_run_id(run_id)}{SUFFIX}"

    def run_ids(self) -> list[str]:
        try:
            names = os.listdir(self.runs_dir)
        except FileNotFoundError:
            return []
        ids = [n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX)]
        return sorted(i for i in ids if RUN_ID_PATTERN.match(i) and ".." not in i)

    def exists(self, run_id: str) -> bool:
        return self.path(run_id).exists()

    def writer(self, run_id: str, *, create: bool = False) -> JournalWriter:
        """The run's single writer (raises JournalLockedError if another process holds it)."""
        if create and not self.runs_dir.is_dir():
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.runs_dir.parent)  # the new folder's own entry must be durable too
        return JournalWriter(self.path(run_id), run_id, create=create, durability=self.durability)

    def read(self, run_id: str) -> Contents:
        # A plain string: building a Path costs as much as reading a small journal.
        path = os.path.join(self.runs_dir, check_run_id(run_id) + SUFFIX)
        try:
            return read(path)
        except FileNotFoundError as exc:
            raise JournalError(f"{path}: no journal for run '{run_id}'") from exc

    def is_locked(self, run_id: str) -> bool:
        """True while some process holds the run's writer lock (probe; takes nothing)."""
        try:
            fd = os.open(self.path(run_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases the probe's lock if it got it
        return False
