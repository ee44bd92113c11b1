"""Progress of a long command (`verify`, `archive`, `import`): one line on stderr, only on a terminal.

When stderr is not a TTY (piped, redirected, under systemd or cron) nothing is drawn at
all, so logs and scripts see exactly the command's output. On a terminal the line is
redrawn at most every REDRAW seconds, cleared before each line the command prints
(stdout is often the same terminal), and cleared at the end, leaving no trace.

Hand-written rather than click's progressbar: that bar cannot be cleared and redrawn
around the lines a command prints between its updates, and when hidden it still prints
its label once.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import click

REDRAW = 0.1  # seconds between two redraws: 10,000 journals cost a few hundred writes, not 10,000
CLEAR = "\r\033[K"  # back to the line's start, erase to its end


class Progress:
    """`done` of `total` items of a command, drawn on `stream` if it is a terminal."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.shown = self.stream.isatty() and total > 1
        self._drawn = False
        self._last = float("-inf")

    def advance(self, item: str = "") -> None:
        """One more item done (`item` names the next, or the last, one)."""
        self.done += 1
        now = time.monotonic()
        if self.shown and (now - self._last >= REDRAW or self.done == self.total):
            self._last = now
            self._draw(item)

    def echo(self, line: str, *, err: bool = False) -> None:
        """Print a line of the command's output (stdout, or stderr with `err`); the progress
        line is cleared first if that output goes to a terminal too, and redrawn under it."""
        if (sys.stderr if err else sys.stdout).isatty():
            self.clear()
        click.echo(line, err=err)

    def clear(self) -> None:
        if self._drawn:
            self.stream.write(CLEAR)
            self.stream.flush()
            self._drawn = False
            self._last = float("-inf")  # redraw at the next item, under the line just printed

    def _draw(self, item: str) -> None:
        pct = 100 * self.done // self.total
        text = f"{self.label}: {self.done}/{self.total} ({pct}%) {item}"
        width = shutil.get_terminal_size().columns - 1
        self.stream.write(CLEAR + text[:width])
        self.stream.flush()
        self._drawn = True


@contextmanager
def progress(label: str, total: int) -> Iterator[Progress]:
    """A progress line for `total` items, cleared when the block ends (however it ends)."""
    bar = Progress(label, total)
    try:
        yield bar
    finally:
        bar.clear()
