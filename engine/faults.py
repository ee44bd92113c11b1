"""Crash points for fault-injection tests: SIGKILL this process at a named instant.

`crash_point("after_append")` does nothing unless the environment asks for it:
RATCHET_CRASH_AT="<point>:<n>" kills the process at the n-th time that point is reached;
RATCHET_CRASH_COUNT=<path> appends one line per point reached, so a clean run can count
every point and the test can then kill at each one of them.
"""

from __future__ import annotations

import os
import signal
import threading

CRASH_AT_ENV = "RATCHET_CRASH_AT"
CRASH_COUNT_ENV = "RATCHET_CRASH_COUNT"

_counts: dict[str, int] = {}
_config: tuple[str | None, str | None] | None = None
_lock = threading.Lock()  # lanes of one process (engine.run.concurrent) count the same points


def _settings() -> tuple[str | None, str | None]:
    global _config
    if _config is None:
        _config = (os.environ.get(CRASH_AT_ENV) or None, os.environ.get(CRASH_COUNT_ENV) or None)
    return _config


def reset() -> None:
    """Forget counts and re-read the environment (for in-process tests)."""
    global _config
    _config = None
    _counts.clear()


def crash_point(name: str) -> None:
    """Count this point; die here (SIGKILL, no clean-up) if it is the one asked for."""
    crash_at, count_path = _settings()
    if crash_at is None and count_path is None:
        return
    with _lock:  # a read-add-write: unlocked, two lanes could both be the n-th, or neither
        n = _counts[name] = _counts.get(name, 0) + 1
        if count_path:
            with open(count_path, "a") as f:
                f.write(f"{name}\n")
    if crash_at == f"{name}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)
