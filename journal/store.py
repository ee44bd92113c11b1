"""Where journals live: the interface every store implements, and how to open one.

The engine speaks to a store in run ids, records and opaque cursors only:

- `writer(run_id, create=)` owns a run (one writer at a time, across processes) and
  appends batches durably; creating is idempotent (`Writer.created` says who created it);
- `read(run_id, after=cursor)` returns the records after a cursor and a new cursor, and
  refuses (`JournalReplacedError`) when the journal is no longer the one the cursor
  was taken on (replaced, cut, edited);
- `held(run_id)` probes whether a writer owns the run now (status: a step "in flight"
  only while some process holds its run, else the run is stalled);
- `changes(since)` lists the runs whose journal is new or grew since an earlier call,
  and `watch(on_change)` is a stream of hints ("run X changed") to wait on;
- `follow`, `verify`, and small durable side files (`publish`/`fetch`/`withdraw`:
  escalation tickets) complete what the CLI and the runner need;
- `archive` retires a finished run's journal out of the runs (`run_ids`, `changes` and
  `watch` no longer see it, so supervisors never scan it); `archived_ids`,
  `archived_lines` and `verify_archived` still read it.

Paths, inodes, byte offsets, `flock`, inotify and `rename` stay inside the file backend
(`journal.file_store`). `open_store("file:", home)` is the factory; a database-backed
store registers another scheme. The contract suite in `tests/contract/` is what any
store must pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import msgspec

from journal.errors import InvalidRunIdError, JournalError
from journal.records import GENESIS, AnyRecord, Record
from journal.timers import Timers
from journal.verify import VerifyResult

Durability = Literal["fsync", "none"]  # "none": no fsync (tests and benchmarks only)
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it is a valid run id (safe as a file name, no path traversal), else raise."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise InvalidRunIdError(str(run_id))
    return run_id


class Cursor(msgspec.Struct, frozen=True):
    """Where a read of one journal stopped: after record `seq`, whose line hashes to `head`.

    `position` belongs to the store that made the cursor (for files: the inode and the
    byte offset); other code compares cursors and passes them back, nothing more. (A
    msgspec Struct: one is made per read, and a frozen dataclass costs six times more.)
    """

    seq: int = 0
    head: str = GENESIS
    position: Any = None


START = Cursor()  # before the first record of any journal


class Chunk(msgspec.Struct):
    """What one read found: the records after a cursor, and the cursor after them."""

    records: list[AnyRecord]
    cursor: Cursor
    torn_bytes: int = 0  # bytes after the last complete record (a crash mid-write): never a record


class Changes(msgspec.Struct, frozen=True):
    """Runs whose journal is new or grew since the cursor given, and the cursor to pass next."""

    run_ids: list[str]
    cursor: Any = None


class Writer(Protocol):
    """The single writer of one run's journal (a context manager; `close` releases it)."""

    run_id: str
    created: bool  # this call created the journal (False: it existed)

    @property
    def last_seq(self) -> int: ...

    @property
    def cursor(self) -> Cursor:
        """Just after the last durable record (equal to a read's cursor at the same point)."""
        ...

    def append(self, record: Record) -> Record: ...

    def append_many(self, records: Sequence[Record]) -> Sequence[Record]:
        """Write records as one batch: all durable when this returns; fills seq, prev, ts."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Writer: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class Watch(Protocol):
    """A running hint stream (see `Store.watch`)."""

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


class Store(Protocol):
    """Where a home's journals live. Every method is safe from many processes at once."""

    location: str  # where the journals are, for people: a folder, a database URL

    @property
    def timers(self) -> Timers | None:
        """Durable deadlines that supervisors claim (journal.timers); None: each supervisor's agenda decides."""
        ...

    def where(self, run_id: str) -> str:
        """Where one run's journal is, for messages (`file:line` style for files)."""
        ...

    def run_ids(self) -> list[str]: ...

    def exists(self, run_id: str) -> bool: ...

    def writer(self, run_id: str, *, create: bool = False) -> Writer:
        """Own the run: JournalLockedError while another writer holds it;
        JournalNotFoundError if it does not exist and `create` is false."""
        ...

    def held(self, run_id: str) -> bool:
        """Does a writer own the run now, in this process or another? A probe: it never
        waits and keeps nothing. False for a run that does not exist, once its writer is
        closed, and once the writer's process has died (even by kill -9)."""
        ...

    def read(self, run_id: str, after: Cursor | None = None) -> Chunk:
        """The complete records after `after` (default: all). JournalReplacedError if the
        journal is not the one `after` was read from; CorruptJournalError on damage."""
        ...

    def changes(self, since: Any = None) -> Changes:
        """Runs created or appended to since `since` (a `Changes.cursor`; None: all runs)."""
        ...

    def watch(self, on_change: Callable[[str], None]) -> Watch:
        """Call `on_change(run_id)` (from another thread) soon after a run's journal
        changes. Hints only: they may be late, doubled or, rarely, lost; `changes` is
        the truth."""
        ...

    def follow(self, run_id: str, *, poll_interval: float = 0.1,
               stop: Callable[[], bool] | None = None) -> Iterator[tuple[bytes, AnyRecord]]:
        """Each record with its exact line bytes, existing then new, until `stop()`."""
        ...

    def verify(self, run_id: str, *, head: str | None = None) -> VerifyResult: ...

    def publish(self, kind: str, name: str, data: bytes, *, sync: bool = True) -> str:
        """Durably and atomically store a small side file (e.g. kind "escalations"): a
        reader sees the old content or the new, never half. Returns where it is.
        `sync=False`: atomic, but durable only once the system writes it back (a power loss
        may leave the old content or none): for what can be rebuilt (seal side files)."""
        ...

    def fetch(self, kind: str, name: str) -> bytes | None: ...

    def withdraw(self, kind: str, name: str) -> None:
        """Remove a side file (durably); nothing if it is not there."""
        ...

    def locate(self, kind: str, name: str) -> str:
        """Where `publish(kind, name, ...)` puts it (what an `escalated` record names)."""
        ...

    def tidy_copies(self, kind: str) -> list[str]:
        """Where side files are shared rows with a file copy on the host that wrote them
        (PostgreSQL), bring this host's copies of `kind` in line with the rows; the names
        removed. Nothing to do where the side files are the files themselves."""
        ...

    def reserve(self, writers: int) -> None:
        """Make room for `writers` writers open at once in this process (lanes of
        engine.run.concurrent), where connections are pooled; nothing to do otherwise."""
        ...

    # --- the archive: finished journals retired out of the runs ---------------------------

    def archive(self, run_id: str, *, head: str, on_step: Callable[[str], None] | None = None) -> str:
        """Move the run's journal into the archive (compressed) if its chain still ends at
        `head`, the head a verify found: what is archived is what was verified. Returns
        where it went.

        Holds the run's writer meanwhile (JournalLockedError if another process does), so
        nothing is appended to it. Crash-safe: at every instant the journal is in the runs
        or in the archive; a crash may leave it in both, and archiving it again finishes
        the job (allowed only if the archived copy is a prefix of the journal: else
        JournalError, and both stay). Afterwards, creating a run with this id is refused.
        `on_step(name)` is called after each durable step (crash tests kill there).
        """
        ...

    def archived_ids(self) -> list[str]:
        """Ids of the archived runs (a run may also still be in `run_ids`: see `archive`)."""
        ...

    def archived_lines(self, run_id: str) -> list[tuple[bytes, AnyRecord]]:
        """An archived journal: each record with its exact line bytes. JournalNotFoundError
        if it is not archived; JournalError if it cannot be read back."""
        ...

    def verify_archived(self, run_id: str, *, head: str | None = None) -> VerifyResult:
        """`verify` of an archived journal (an archive that cannot be read back fails)."""
        ...


def open_store(url: str, home: Path | str | None = None, *, durability: Durability = "fsync") -> Store:
    """The store a URL names: `file:` (journals under `home`), `file:/path/to/home`, or
    `postgresql://...` (journal.pg_store; needs psycopg, the `pg` extra)."""
    scheme, _, rest = url.partition(":")
    if scheme == "file":
        from journal.file_store import FileStore  # the backend imports this module's types

        root = Path(rest) if rest else home
        if root is None:
            raise JournalError(f"store {url!r}: 'file:' needs a home folder; write file:/path/to/home")
        return FileStore(Path(root), durability=durability)
    if scheme in ("postgresql", "postgres"):
        try:
            from journal.pg_store import PgStore  # psycopg: only for those who use it (the `pg` extra)
        except ImportError as exc:
            raise JournalError(f"store {scheme}://...: the PostgreSQL store needs psycopg ({exc}); "
                               "hint: pip install 'ratchet[pg]'") from exc

        return PgStore(url, home=Path(home) if home is not None else None, durability=durability)
    raise JournalError(f"store {url!r}: unknown kind {scheme!r}; use 'file:' (journals under the home) "
                       "or 'postgresql://USER@HOST:PORT/DATABASE'")
