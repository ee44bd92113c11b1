"""Ratchet's data folder ($RATCHET_HOME): where runs, the inbox and escalation tickets live."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine.errors import UnsafeInboxError
from journal import Store, open_store


class Home:
    """The layout of one Ratchet home (README "The journal" and "The inbox"), and its store.

    One path per folder of the layout (values, not state), plus the store.

    `store` is where journals and tickets live, made by `journal.open_store` from a URL:
    `file:` (the default) keeps them in this folder (`runs/`, `escalations/`);
    `postgresql://...` keeps them in a database (the inbox stays in this folder). Unset,
    it is $RATCHET_STORE (so that worker processes inherit the command's `--store`).
    """

    def __init__(self, root: Path | str, store: str | None = None) -> None:
        store = store or os.environ.get("RATCHET_STORE") or "file:"
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.inbox = self.root / "inbox"
        self.inbox_tmp = self.inbox / ".tmp"  # writers write here, then rename into inbox/
        self.inbox_claimed = self.inbox / ".claimed"
        self.inbox_done = self.inbox / "done"
        self.inbox_rejected = self.inbox / "rejected"
        self.escalations = self.root / "escalations"
        self.store: Store = open_store(store, self.root)

    def ensure(self) -> Home:
        """Create every folder (idempotent); UnsafeInboxError if an inbox folder is a symlink."""
        self.check_inbox()
        for folder in (self.runs, self.inbox_tmp, self.inbox_claimed, self.inbox_done,
                       self.inbox_rejected, self.escalations):
            folder.mkdir(parents=True, exist_ok=True)
        self.check_inbox()
        return self

    def check_inbox(self) -> None:
        """Refuse inbox folders that are symlinks (or not directories): a symlinked done/
        or rejected/ would let the supervisor move files out of the inbox."""
        for folder in (self.inbox, self.inbox_tmp, self.inbox_claimed, self.inbox_done, self.inbox_rejected):
            try:
                mode = os.lstat(folder).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(mode):
                raise UnsafeInboxError(folder, "is a symlink")
            if not stat.S_ISDIR(mode):
                raise UnsafeInboxError(folder, "is not a directory")

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"
