"""Hints that journals changed, from inotify (watchdog): the file store's `watch`.

An event only says "run X changed, look again"; the reader then reads the journal from
its cursor. inotify's queue can overflow silently and a handler exception would kill
the observer thread, so the handler catches everything, `alive()` lets the caller
restart a dead watch, and callers rescan with `Store.changes` now and then.

Imported only by `FileStore.watch`: the rest of `journal` needs nothing but msgspec.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

log = logging.getLogger("ratchet.journal")

# Narrowed, or inotify would report every read of a journal too (IN_OPEN, IN_ACCESS...).
_EVENTS = [FileCreatedEvent, FileMovedEvent, FileModifiedEvent, FileClosedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, suffix: str, on_change: Callable[[str], None]) -> None:
        self.suffix, self.on_change = suffix, on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
            name = os.path.basename(path)
            if name.endswith(self.suffix):
                self.on_change(name[: -len(self.suffix)])
        except Exception:  # an escaping exception would kill the observer thread silently
            log.exception("journal watch: handler failed on %r", event)


class JournalWatch:
    """An inotify watch of one runs/ folder, started on creation."""

    def __init__(self, folder: Path, suffix: str, on_change: Callable[[str], None]) -> None:
        observer = Observer()
        observer.schedule(_Handler(suffix, on_change), str(folder), event_filter=_EVENTS)
        observer.daemon = True
        observer.start()
        self._observer: BaseObserver | None = observer

    def alive(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception:  # stopping a dead observer may raise; there is nothing to save
                log.debug("journal watch: stop failed", exc_info=True)
