"""Where the engine's time comes from: every `ts`, deadline and retry due date.

All deadlines are absolute UTC instants computed from an injected clock, so a test of a
two-day approval wait advances a `FakeClock` instead of sleeping. `FileClock` keeps the
fake time in a file so that subprocesses (fault tests, `ratchet run`) share it.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from engine.errors import ClockError

CLOCK_FILE_ENV = "RATCHET_CLOCK_FILE"


def iso(dt: datetime) -> str:
    """`2026-11-29T09:41:00.000000Z`: the journal's timestamp form (UTC, microseconds, Z)."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The aware UTC datetime of an ISO 8601 string (a naive one is taken as UTC)."""
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """Time that moves only when told: `advance()` or `sleep()` (which returns at once).

    Shared by the lanes of a concurrent driver (engine.run.concurrent): an advance is one
    read-add-write under a lock, so two lanes sleeping at once both count."""

    def __init__(self, start: datetime | str = "2026-01-05T09:00:00Z") -> None:
        self._now = parse_iso(start) if isinstance(start, str) else start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)


class FileClock:
    """A fake clock whose time is an ISO timestamp in a file, shared by processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def now(self) -> datetime:
        text = self.path.read_text().strip()
        try:
            return parse_iso(text)
        except ValueError as exc:
            raise ClockError(self.path, text) from exc

    def set(self, dt: datetime) -> None:
        from journal.durable import own_tmp, publish  # only where the clock is moved (tests, operators)

        # Atomic replace, so a reader in another process never sees a half-written time.
        publish(own_tmp(self.path), self.path, iso(dt).encode(), sync=False)

    def advance(self, seconds: float) -> datetime:
        dt = self.now() + timedelta(seconds=seconds)
        self.set(dt)
        return dt

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)


def clock_from_env() -> Clock:
    """FileClock when RATCHET_CLOCK_FILE is set (tests), else the system clock."""
    path = os.environ.get(CLOCK_FILE_ENV)
    return FileClock(path) if path else SystemClock()
