"""Hints that files changed, from inotify (watchdog): the file store's `watch`.

An event only says "run X changed, look again"; the reader then reads the journal from
its cursor. inotify's queue can overflow silently and a handler exception would kill
the observer thread, so handlers catch everything, `alive()` lets the caller restart a
dead watch, and callers rescan with `Store.changes` now and then.

Imported only by `FileStore.watch` (and the supervisor's inbox watch, which reuses
`ObserverWatch`): the rest of `journal` needs nothing but msgspec.
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

log = logging.getLogger("ratchet.journal")

# Narrowed, or inotify would report every read of a journal too (IN_OPEN, IN_ACCESS...).
_JOURNAL_EVENTS = [FileCreatedEvent, FileMovedEvent, FileModifiedEvent, FileClosedEvent]


class SafeHandler(FileSystemEventHandler):
    """Calls `on_event(event)`; never lets an exception escape into the observer thread."""

    def __init__(self, on_event: Callable[[FileSystemEvent], None]) -> None:
        self.on_event = on_event

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self.on_event(event)
        except Exception:  # an escaping exception would kill the observer thread silently
            log.exception("watch: handler failed on %r", event)


class ObserverWatch:
    """One started watchdog observer of one folder: `alive()` and `stop()`."""

    def __init__(self, folder: Path, handler: FileSystemEventHandler, *, recursive: bool = False,
                 events: list[type[FileSystemEvent]]) -> None:
        observer = Observer()
        observer.schedule(handler, str(folder), recursive=recursive, event_filter=events)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._stopped = False

    def alive(self) -> bool:
        return not self._stopped and self._observer.is_alive()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._observer.stop()
            self._observer.join(timeout=5)
        except Exception:  # stopping a dead observer may raise; there is nothing to save
            log.debug("watch: stop failed", exc_info=True)


def watch_journals(folder: Path, suffix: str, on_change: Callable[[str], None]) -> ObserverWatch:
    """Call `on_change(run_id)` for each event on a `<run_id><suffix>` file in `folder`."""

    def hint(event: FileSystemEvent) -> None:
        name = os.path.basename(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
        if name.endswith(suffix):
            on_change(name[: -len(suffix)])

    return ObserverWatch(folder, SafeHandler(hint), events=_JOURNAL_EVENTS)
