"""`ratchet supervise` starts its workers' forkserver before the rest of the CLI loads.

Imported by engine.cli before the command modules, for its effect: when the program is
the `ratchet` console script and its command is `supervise`, the forkserver (a new
interpreter importing the engine, engine.supervise.forkserver) starts now, so its imports
overlap the CLI's and the supervisor's instead of following them: a crashed run is
resumed sooner after a restart. Any other command, or the CLI called from Python, starts
nothing here.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from engine.supervise.forkserver import start_forkserver

_VALUED = ("--home", "--store")  # global options that take a value (the next word, unless given with "=")


def command_word(args: list[str]) -> str | None:
    """The command named in `ratchet [global options] COMMAND ...`, or None."""
    skip = False
    for word in args:
        if skip:
            skip = False
        elif word in _VALUED:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def _is_the_program() -> bool:
    """Is this the `ratchet` program itself? Not a worker re-running its main script while
    it starts (multiprocessing names that process after the worker, and hands it the
    parent's argv), which must never start processes of its own."""
    return multiprocessing.current_process().name == "MainProcess" and os.path.basename(sys.argv[0]) == "ratchet"


if _is_the_program() and command_word(sys.argv[1:]) == "supervise":
    start_forkserver()
