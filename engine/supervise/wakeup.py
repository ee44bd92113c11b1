"""The supervisor loop's wake-up flag: a module of its own, so that `supervise --once`,
which watches nothing, never imports the watcher's watchdog."""

from __future__ import annotations

import contextlib
import os


class Wakeup:
    """A set/clear flag another thread (or a signal handler) raises to wake the loop.

    A self-pipe rather than a threading.Event, so that one `multiprocessing.connection.wait`
    sleeps on it and on the workers' pipes at once.
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._r

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: the loop will wake anyway
            os.write(self._w, b"!")

    def clear(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self._r, self._w):
            os.close(fd)
