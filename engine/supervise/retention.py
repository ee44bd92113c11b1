"""How long the store keeps settled messages (PostgreSQL's rows), and the supervisors' expiring of them.

A message row that settled (delivered, or refused with its reason) is kept for people — what
reached the database and how it ended — for `RATCHET_MESSAGE_RETENTION` (or `supervise
--message-retention`; a duration, 7d by default, 0s: not kept), from when it settled (the
row's `settled_at`, the database server's clock) to the supervisor's now (the engine's clock:
a host whose clock runs behind the server's keeps rows that much longer). Then any supervisor
sharing the store deletes it: at its start and at each rescan, up to BATCHES batches of BATCH
rows, the oldest first (journal.pg_messages.expire: an indexed query, rows locked with SKIP
LOCKED, so two supervisors split the work and never wait for each other). Queued rows are never deleted, however old.

Deleting a settled row never lets its message apply twice: the run's journal keeps the key of
every message it applied or refused (`source_file`), and a delivery looks for it under the
run's lock (engine.run.runner), so the same key posted again — an inbox file claimed before a
crash and posted again after its row was gone — finds its earlier answer and applies nothing.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from engine.definition.durations import parse_duration
from engine.errors import EngineError
from journal import JournalError
from journal.messages import MessageBox

log = logging.getLogger("ratchet.supervisor")

ENV = "RATCHET_MESSAGE_RETENTION"
DEFAULT = "7d"
BATCH = 500  # rows per statement: a short transaction, few locks
BATCHES = 20  # statements per look at most: a backlog is worked off over several rescans


def retention_seconds(value: str | None = None) -> float:
    """Seconds a settled message is kept: `value` (the option), else RATCHET_MESSAGE_RETENTION,
    else 7 days. EngineError (one line) if it is not a duration."""
    where = "--message-retention" if value is not None else ENV
    raw = value if value is not None else (os.environ.get(ENV) or DEFAULT)
    try:
        return parse_duration(raw, allow_zero=True)
    except ValueError as exc:
        raise EngineError(f"{where}={raw!r}: {exc}; hint: e.g. 7d, 36h, 0s (not kept)") from exc


class Retention:
    """Expires a store's settled messages older than `keep` seconds (see the module's docstring)."""

    def __init__(self, box: MessageBox, keep: float | None = None) -> None:
        self.box = box
        self.keep = keep  # None: RATCHET_MESSAGE_RETENTION or the default, read at the first look
        self.expired = 0  # rows this supervisor deleted

    def expire(self, now: datetime) -> int:
        """Delete what is due as of `now` (the engine's clock), in bounded batches: how many rows."""
        if self.keep is None:
            self.keep = retention_seconds()
        before = now - timedelta(seconds=self.keep)
        done = 0
        try:
            for _ in range(BATCHES):
                deleted = self.box.expire_messages(before, BATCH)
                done += deleted
                if deleted < BATCH:
                    break
        except JournalError as exc:  # the database is away: the next rescan tries again
            log.warning("%s", exc)
        if done:
            self.expired += done
            log.info("deleted %d settled messages settled before %s (kept %s)", done,
                     before.strftime("%Y-%m-%d %H:%M:%SZ"), _kept(self.keep))
        return done


def _kept(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
