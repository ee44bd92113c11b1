"""Hints that runs changed, from PostgreSQL's LISTEN/NOTIFY: the PostgreSQL store's `watch`.

Every append notifies the store's channel with the run's id, in its own transaction (so a
hint never comes before the rows it announces). One thread, one connection of its own,
LISTENing; `alive()` turns false if the connection is lost, and the caller restarts the
watch and rescans with `Store.changes` (hints may be lost meanwhile; `changes` is the truth).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from journal.errors import JournalError

log = logging.getLogger("ratchet.journal")

POLL = 0.2  # seconds between checks of the stop flag while no notification comes


class NotifyWatch:
    """A started LISTEN thread: `alive()` and `stop()`."""

    def __init__(self, url: str, channel: str, on_change: Callable[[str], None], *, where: str) -> None:
        try:
            self._conn = psycopg.connect(url, autocommit=True)
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.OperationalError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise JournalError(f"{where}: cannot listen for changes ({reason}); "
                               "hint: is the server running, and reachable from here?") from exc
        self._on_change = on_change
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ratchet-pg-watch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stopped.is_set():
                for note in self._conn.notifies(timeout=POLL):
                    try:
                        self._on_change(note.payload)
                    except Exception:  # an escaping exception would end the watch silently
                        log.exception("watch: handler failed on %r", note.payload)
        except psycopg.Error as exc:
            if not self._stopped.is_set():
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("watch: lost its connection to the database (%s)", reason)
        finally:
            self._conn.close()

    def alive(self) -> bool:
        return not self._stopped.is_set() and self._thread.is_alive()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
