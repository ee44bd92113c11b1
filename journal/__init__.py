"""Ratchet's journal: append-only, fsync'd, hash-chained JSON Lines, one file per run.

This package imports only the standard library and msgspec; it knows nothing of the engine.
See FORMAT.md beside this file for the on-disk format and how recovery works.
"""

from journal.errors import CorruptJournalError, JournalError, JournalLockedError, JournalWriteError
from journal.follow import follow, follow_lines
from journal.reader import Contents, line_hash, read
from journal.records import (
    GENESIS,
    AnyRecord,
    Cancelled,
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
    Waiting,
    decode,
    hash_definition,
    pinned_definition,
    encode,
    to_builtins,
)
from journal.store import FileStore, InvalidRunIdError, Store, check_run_id
from journal.verify import VerifyResult, verify
from journal.writer import JournalWriter, fsync_dir, utc_now

__all__ = [name for name in dir() if not name.startswith("_")]
