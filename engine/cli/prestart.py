"""`ratchet supervise` forks its workers' fork server before the rest of the CLI loads.

Imported by engine.cli before the command modules, for its effect: when the program is
the `ratchet` console script and its command is `supervise`, the fork server
(engine.supervise.forkserver: a fork of this process, not a new interpreter) starts now,
while this process is still one thread holding no descriptor but stdio, and its imports
of what workers need run while the CLI and the supervisor import, scan the journals and
the inbox: a crashed run is resumed sooner after a restart. Any other command, or the
CLI called from Python, starts nothing here (the supervise command forks it then).
"""

from __future__ import annotations

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
    it starts (where workers come from multiprocessing's forkserver, engine.supervise.workers:
    it names that process after the worker and hands it the parent's argv), which must never
    start processes of its own."""
    loaded = sys.modules.get("multiprocessing")  # such a worker has it loaded; importing it here would cost ~5 ms
    if loaded is not None and loaded.current_process().name != "MainProcess":
        return False
    return os.path.basename(sys.argv[0]) == "ratchet"


if _is_the_program() and command_word(sys.argv[1:]) == "supervise":
    start_forkserver()
