"""The journal's error tree. Messages read `where: what; hint`."""

from __future__ import annotations

from pathlib import Path


class JournalError(Exception):
    """Base of every error the journal raises on purpose."""


class JournalLockedError(JournalError):
    """Another process holds the journal's writer lock."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        super().__init__(
            f"{path}: run '{run_id}' is already being advanced by another process "
            "(its journal is locked); wait for it or stop that process"
        )


class CorruptJournalError(JournalError):
    """A complete line that is not a valid record, or breaks seq/hash continuity."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        super().__init__(f"{path}:{line}: {problem}; run 'ratchet verify'")


class JournalWriteError(JournalError):
    """A write or fsync failed: the journal must be reopened (never retry an fsync)."""
