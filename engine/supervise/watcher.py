"""Wake-up hints: watchdog on `inbox/`, the store's watch on journals; never the data.

An event only says "look again soon": which journals changed and whether the inbox
did. Everything is then read by the supervisor, and a periodic rescan covers whatever
the watcher missed (inotify's queue overflows silently; a handler exception would kill
the observer thread, so the handler catches everything and the supervisor restarts a
dead watch).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileClosedEvent, FileCreatedEvent, FileMovedEvent

from engine.supervise.wakeup import Wakeup
from journal import Store, Watch
from journal.file_watch import ObserverWatch, SafeHandler
from journal.messages import message_box

log = logging.getLogger("ratchet.supervisor")

# inotify would report reads too (IN_OPEN/IN_ACCESS/IN_CLOSE_NOWRITE) if not narrowed.
_INBOX_EVENTS = [FileCreatedEvent, FileMovedEvent, FileClosedEvent]


def _shorten_move_pairing() -> None:
    """Make watchdog wait 20 ms, not 500 ms, for the IN_MOVED_TO that pairs an IN_MOVED_FROM.

    watchdog's inotify emitter holds an IN_MOVED_FROM while it waits for its pair, and its
    consumer thread sleeps out that wait even once the pair has arrived (when the two came
    in separate reads), so every later event waited up to 0.5 s: the p99 of the inbox
    latency. Both halves of a rename are queued by the kernel together; 20 ms is ample,
    and an unpaired half is only a hint to us anyway.
    """
    try:
        from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
    except ImportError:  # not Linux: no inotify emitter
        return
    InotifyMoveEventGrouper.delay = 0.02


def watch_inbox(inbox: Path, on_event: Callable[[], None]) -> Watch:
    """An inotify watch of the inbox folder and its subfolders."""
    _shorten_move_pairing()
    # Recursive on purpose: watchdog holds an unpaired IN_MOVED_FROM for 0.5 s (waiting
    # for its IN_MOVED_TO) and every later event queues behind it. Claiming moves a file
    # from inbox/ to inbox/.claimed/; watching the subfolders pairs the two at once.
    return ObserverWatch(inbox, SafeHandler(lambda _event: on_event()), recursive=True, events=_INBOX_EVENTS)


class _OverflowFilter(logging.Filter):
    """Notices watchdog's "Inotify queue overflowed" warning: events were lost, and only a
    full rescan finds them (watchdog says so only in its log)."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__()
        self.on_overflow = on_overflow

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in str(record.msg).lower():
            self.on_overflow()
        return True


_WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


class Watcher:
    """Watches the inbox and the store's journals; collects hints and raises `wake` on each."""

    def __init__(self, inbox: Path, store: Store, wake: Wakeup) -> None:
        self.inbox, self.store, self.wake = Path(inbox), store, wake
        self._lock = threading.Lock()
        self._changed_runs: set[str] = set()
        self._inbox_changed = False
        self._overflowed = False
        self._messages_changed = False  # the store's messages table (PostgreSQL) got a row or settled one
        self._filter = _OverflowFilter(self._overflow)
        self.watches: list[Watch] = []  # the inbox's and the journals'

    def start(self) -> None:
        for name in _WATCHDOG_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        self.watches = [watch_inbox(self.inbox, self._inbox_hint), self.store.watch(self._journal_hint)]
        box = message_box(self.store)
        if box is not None:
            self.watches.append(box.watch_messages(self._message_hint))

    def take_overflow(self) -> bool:
        """Did the kernel drop events since the last call? (Then rescan everything.)"""
        with self._lock:
            overflowed, self._overflowed = self._overflowed, False
        return overflowed

    def _overflow(self) -> None:
        with self._lock:
            self._overflowed = True
        self.wake.set()

    def alive(self) -> bool:
        return bool(self.watches) and all(watch.alive() for watch in self.watches)

    def ensure_alive(self) -> bool:
        """Restart a dead watch; True if one was restarted (the caller must rescan)."""
        if self.alive():
            return False
        log.warning("watcher: a watch died; restarting it (a rescan covers the gap)")
        self.stop()
        self.start()
        return True

    def stop(self) -> None:
        for name in _WATCHDOG_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        watches, self.watches = self.watches, []
        for watch in watches:
            watch.stop()

    def take(self) -> tuple[set[str], bool]:
        """(run ids whose journal changed, whether the inbox changed) since the last take."""
        with self._lock:
            runs, inbox = self._changed_runs, self._inbox_changed
            self._changed_runs, self._inbox_changed = set(), False
        return runs, inbox

    def take_messages(self) -> bool:
        """Did the store's messages change since the last call? (Then read the queued rows.)"""
        with self._lock:
            changed, self._messages_changed = self._messages_changed, False
        return changed

    def _message_hint(self, _run_id: str) -> None:
        with self._lock:
            self._messages_changed = True
        self.wake.set()

    def _inbox_hint(self) -> None:
        with self._lock:
            self._inbox_changed = True
        self.wake.set()

    def _journal_hint(self, run_id: str) -> None:
        with self._lock:
            self._changed_runs.add(run_id)
        self.wake.set()
