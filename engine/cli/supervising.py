"""What `ratchet supervise` does once its options are read, without the command line's framework.

The console script (engine.cli.launch) calls `supervise` directly for a plain `ratchet
supervise ...` command line, and the click command (engine.cli.supervision) for every
other; both then do exactly this. The order is the recovery's (README, "Performance"):
the modules a worker needs too, the fork server, the runs a crash left moving handed to
workers (engine.supervise.head_start), and only then the sealing key's check and the
supervisor's own modules, imported while the workers journal on the other core.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli.options import MACHINES_DIR

if TYPE_CHECKING:
    from engine.supervise.metrics import Metrics


def supervise(home: Path, *, debug: bool, once: bool, workers: int, rescan: float, grace: float,
              job_timeout: float, quiet: bool, metrics: Callable[[], Metrics] | None = None,
              retention: float | None = None) -> int:
    """Supervise the runs under `home` (an existing folder, or any on PostgreSQL) until
    stopped, or with `once` until nothing is due; the exit code. `metrics` makes the
    metrics (served before the loop starts), or None for none. `retention`: seconds a
    settled message row is kept (engine.supervise.retention; None: RATCHET_MESSAGE_RETENTION)."""
    from engine.home import Home
    from engine.run.sealing import home_key  # (and the journal's keys: the fork server's runner needs them too)
    from engine.supervise import worker  # noqa: F401  (what both sides need, imported once before the fork)
    from engine.supervise.forkserver import start_forkserver, stop_forkserver
    from engine.supervise.head_start import head_start
    from engine.supervise.retention import retention_seconds

    keep = retention if retention is not None else retention_seconds()  # a bad value: refused before anything starts

    # Forked now, before the supervisor's own modules: no thread runs yet, and the server
    # imports the runner on one core while this process goes on on the other.
    start_forkserver()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s ratchet supervise: %(message)s")
    if debug:
        logging.getLogger("ratchet").setLevel(logging.DEBUG)  # ours only: watchdog's debug lines are a flood
    supervised = Home(home)
    where = supervised.store.location
    store = f"; journals in {where}" if where.startswith("postgresql:") else ""
    logging.getLogger("ratchet.supervisor").info("home %s%s", home.absolute(), store)
    # Until the supervisor can stop gracefully, a SIGTERM or Ctrl-C is kept for it: from the head
    # start on, workers hold runs, and a stop must let their steps finish (after the fork: the
    # server keeps the default handlers; after the store is open: a stop while it connects ends it).
    stops: list[int] = []
    defaults = {sig: signal.signal(sig, lambda signum, _: stops.append(signum))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    # Metrics fold every record the first scan reads: with them, the supervisor makes that scan itself.
    head = head_start(supervised, workers=workers, machines_dir=MACHINES_DIR) if metrics is None else None
    if head is None:  # no worker holds a run: a stop until the loop's handlers acts at once, as before
        for sig, handler in defaults.items():
            signal.signal(sig, handler)
        for signum in stops:
            signal.raise_signal(signum)
    try:
        from engine.supervise.supervisor import Supervisor

        # A missing or foreign sealing key stops it here, not in every worker. (A head start's
        # workers met it too, and failed before their run's lock: nothing was journaled.)
        home_key(supervised)
        supervisor = Supervisor(supervised, workers=workers, machines_dir=MACHINES_DIR, rescan=rescan, grace=grace,
                                job_timeout=job_timeout, metrics=metrics() if metrics is not None else None,
                                head_start=head, message_retention=keep)
        supervisor.install_signal_handlers()
        for signum in stops:
            supervisor.stop(signum)  # its loop then starts nothing new and drains what the head start began
        return supervisor.run(once=once)
    except BaseException:
        # The start failed before the loop took the head start's workers over (the key, the inbox's
        # watch, say): their steps in hand finish, as in a graceful stop, rather than die with this
        # process (a non-idempotent one would be escalated); the server too is then reaped. After the
        # loop's own drain this does nothing.
        if head is not None:
            head.abandon(grace)
            stop_forkserver()
        raise
