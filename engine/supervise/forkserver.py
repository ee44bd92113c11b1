"""The workers' forkserver: what it preloads, and starting it before it is needed.

Workers are forked from a forkserver (engine.supervise.workers says why), a fresh
interpreter that imports the engine once. That costs about as much as the supervisor's
own start, so `ratchet supervise` starts it first thing (engine.cli.prestart), and its
imports run while the supervisor imports, scans the journals and the inbox. This module
imports nothing of the engine, so that starting it early costs nothing.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver

# A worker started from the `ratchet` console script re-runs that script (as __mp_main__,
# multiprocessing's "safe importing of main module"), which imports engine.cli: loaded once
# here, that costs a worker nothing.
PRELOAD = ["engine.supervise.worker", "engine.run.runner", "engine.cli"]


def start_forkserver() -> None:
    """Start the forkserver now without waiting for it (idempotent); the first worker's
    start waits for it if it is not ready by then."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
