"""The journal's error tree. Messages read `where: what; hint`."""

from __future__ import annotations

from pathlib import Path


class JournalError(Exception):
    """Base of every error the journal raises on purpose."""


class InvalidRunIdError(JournalError):
    """A run id that could not be a journal's name (or could escape its folder)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"invalid run id {run_id!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )


class JournalNotFoundError(JournalError):
    """No journal for this run id in the store."""

    def __init__(self, where: Path | str, run_id: str) -> None:
        self.where = where
        self.run_id = run_id
        super().__init__(f"{where}: no journal for run '{run_id}'; list runs with 'ratchet status'")


class JournalLockedError(JournalError):
    """Another process owns the run (holds its journal's writer lock)."""

    def __init__(self, path: Path | str, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        super().__init__(
            f"{path}: run '{run_id}' is already being advanced by another process "
            "(its journal is locked); wait for it or stop that process"
        )


class CorruptJournalError(JournalError):
    """A complete line that is not a valid record, or breaks seq/hash continuity."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        super().__init__(f"{path}:{line}: {problem}; run 'ratchet verify'")


class JournalReplacedError(CorruptJournalError):
    """A read from a cursor found another journal than the one the cursor was taken on
    (replaced, cut below the cursor, or its next record does not chain to it)."""


class JournalWriteError(JournalError):
    """A write or fsync failed: the journal must be reopened (never retry an fsync)."""


class KeyFileError(JournalError, ValueError):
    """A key file is missing, unreadable, or not an Ed25519 key in PEM."""
