"""Ratchet's journal: append-only, fsync'd, hash-chained JSON Lines, one file per run.

This package imports only the standard library and msgspec (a store backend may import
its own driver when it is used: inotify for the file store's watch); it knows nothing of
the engine. `journal.store` is the interface the engine uses; FORMAT.md beside this
file is the on-disk format and how recovery works.
"""

from journal.errors import (
    CorruptJournalError,
    InvalidRunIdError,
    JournalError,
    JournalLockedError,
    JournalNotFoundError,
    JournalReplacedError,
    JournalWriteError,
)
from journal.file_store import FileStore
from journal.follow import follow, follow_lines
from journal.reader import Contents, line_hash, read
from journal.records import (
    GENESIS,
    AnyRecord,
    Cancelled,
    CompensationFinished,
    CompensationStarted,
    CutStep,
    Escalated,
    Record,
    Resolved,
    RetryScheduled,
    RunFinished,
    RunStarted,
    StepAbandoned,
    StepFailed,
    StepStarted,
    StepSucceeded,
    TimeoutFired,
    Transition,
    TriggerReceived,
    TriggerRefused,
    Upgraded,
    Waiting,
    decode,
    encode,
    hash_definition,
    pinned_definition,
    to_builtins,
)
from journal.store import START, Changes, Chunk, Cursor, Store, Watch, Writer, check_run_id, open_store
from journal.verify import VerifyResult, verify
from journal.writer import JournalWriter, fsync_dir, utc_now

__all__ = [
    "AnyRecord",
    "Cancelled",
    "Changes",
    "Chunk",
    "CompensationFinished",
    "CompensationStarted",
    "Contents",
    "CorruptJournalError",
    "Cursor",
    "CutStep",
    "Escalated",
    "FileStore",
    "GENESIS",
    "InvalidRunIdError",
    "JournalError",
    "JournalLockedError",
    "JournalNotFoundError",
    "JournalReplacedError",
    "JournalWriteError",
    "JournalWriter",
    "Record",
    "Resolved",
    "RetryScheduled",
    "RunFinished",
    "RunStarted",
    "START",
    "StepAbandoned",
    "StepFailed",
    "StepStarted",
    "StepSucceeded",
    "Store",
    "TimeoutFired",
    "Transition",
    "TriggerReceived",
    "TriggerRefused",
    "Upgraded",
    "VerifyResult",
    "Waiting",
    "Watch",
    "Writer",
    "check_run_id",
    "decode",
    "encode",
    "follow",
    "follow_lines",
    "fsync_dir",
    "hash_definition",
    "line_hash",
    "open_store",
    "pinned_definition",
    "read",
    "to_builtins",
    "utc_now",
    "verify",
]
