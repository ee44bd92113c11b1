"""The supervisor rescans every journal at once when inotify dropped events: watchdog says
so only in its log, which the watcher listens to."""

from __future__ import annotations

import logging

from engine.supervise.watcher import Wakeup, Watcher
from journal import open_store

OVERFLOW = "Inotify queue overflowed; filesystem events were lost"  # watchdog 7.x, inotify_c.py


def test_an_inotify_overflow_logged_by_watchdog_asks_for_a_full_rescan(tmp_path):
    (tmp_path / "inbox").mkdir()
    wake = Wakeup()
    watcher = Watcher(tmp_path / "inbox", open_store("file:", tmp_path), wake)
    watcher.start()
    try:
        assert not watcher.take_overflow()
        logging.getLogger("watchdog.observers.inotify_c").warning(OVERFLOW)
        assert watcher.take_overflow()
        assert not watcher.take_overflow()  # once per overflow
    finally:
        watcher.stop()
        wake.close()
    logging.getLogger("watchdog.observers.inotify_c").warning(OVERFLOW)
    assert not watcher.take_overflow()  # a stopped watcher listens no more
