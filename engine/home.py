"""Ratchet's data folder ($RATCHET_HOME): where runs, the inbox and escalation tickets live."""

from __future__ import annotations

from pathlib import Path

from journal import FileStore


class Home:
    """The layout of one Ratchet home (see DESIGN.md "Files on disk")."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.inbox = self.root / "inbox"
        self.inbox_tmp = self.inbox / ".tmp"  # writers write here, then rename into inbox/
        self.inbox_claimed = self.inbox / ".claimed"
        self.inbox_done = self.inbox / "done"
        self.inbox_rejected = self.inbox / "rejected"
        self.escalations = self.root / "escalations"
        self.store = FileStore(self.runs)

    def ensure(self) -> Home:
        """Create every folder (idempotent)."""
        for folder in (self.runs, self.inbox_tmp, self.inbox_claimed, self.inbox_done,
                       self.inbox_rejected, self.escalations):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"
