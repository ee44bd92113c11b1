"""How a supervisor stops: a graceful drain of its workers, then one line on how it went.

On SIGTERM/SIGINT (`Stops.add`) the supervisor's loop ends and dispatches nothing more.
`drain` then asks every busy worker to finish the step in hand and start no other (a
SIGTERM to the worker: its Runner drains, engine.supervise.worker) and waits for their
results until `grace` seconds after the first signal. Past it, or at a second signal, it
kills those still busy: a crash for their runs, which the next start replays (an
idempotent step runs again with its key, a non-idempotent one escalates "unknown
outcome"). Each phase is one log line: what it waits for and how long, what it kills and
why, and at the end what finished and what was killed.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.supervise.jobs import Result
from engine.supervise.workers import WorkerPool

log = logging.getLogger("ratchet.supervisor")


class Stops:
    """The stop requests a supervisor got: the first starts the grace, a second ends it.

    `add` is one list append: safe from a signal handler or another thread.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []  # (signal number, time.monotonic())

    def add(self, signum: int) -> None:
        self.seen.append((signum, time.monotonic()))

    @property
    def now(self) -> bool:
        """A second request came: stop at once."""
        return len(self.seen) > 1

    def exit_code(self) -> int:
        """0, or after a second signal 128 + its number (130 for Ctrl-C), as a shell reports it."""
        return 128 + self.seen[1][0] if self.now else 0

    def why(self) -> str:
        return f"on {signal.Signals(self.seen[0][0]).name}" if self.seen else "as the loop ended"


@dataclass
class Drained:
    """What a drain ended with: the jobs that finished, and the runs whose worker it lost."""

    began: float  # time.monotonic() of the first stop request (or of the drain)
    finished: list[Result]
    killed: list[str]


def drain(pool: WorkerPool, stops: Stops, grace: float, wake: Any) -> Drained:
    """Let busy workers finish the step in hand, starting no other, until `grace` s after the
    first stop request or a second one (`wake` is ready when one comes); then kill the rest."""
    began = stops.seen[0][1] if stops.seen else time.monotonic()
    deadline = began + grace
    signalled = [worker.current.run_id for worker in pool.drain()]
    if signalled:
        log.info("stopping %s: starting no new step; %d in flight%s may finish within %.1fs; a second "
                 "signal stops at once", stops.why(), len(signalled), _listed(signalled),
                 max(0.0, deadline - time.monotonic()))
    elif stops.seen:
        log.info("stopping %s: nothing in flight", stops.why())
    finished: list[Result] = []
    died: list[str] = []
    while True:
        wake.clear()  # before looking: a request after this still wakes the wait below
        left = deadline - time.monotonic()
        if not pool.busy() or stops.now or left <= 0:
            break
        for result in pool.settle(left, wake):
            if result.outcome == "died":
                died.append(result.job.run_id)
            else:
                finished.append(result)
    busy = [worker.current.run_id for worker in pool.busy()]
    if busy:
        why = "at a second signal" if stops.now else f"past the grace of {grace:g}s"
        log.warning("stopping now %s: killing %d busy worker%s%s: a crash for %s; the next start replays "
                    "%s (a non-idempotent step cut off escalates)", why, len(busy), _s(busy), _listed(busy),
                    *(("that run", "it") if len(busy) == 1 else ("those runs", "them")))
    done, abandoned = pool.stop(0)
    return Drained(began, finished + done, died + [job.run_id for job in abandoned])


def report(drained: Drained, stops: Stops, where: Callable[[str], str]) -> None:
    """The last line: how long the stop took, what finished (and where each run stands),
    what was killed. Said only if there was a stop request or anything in flight."""
    if not (stops.seen or drained.finished or drained.killed):
        return
    runs = [where(result.job.run_id) for result in drained.finished]
    killed = f"killed {len(drained.killed)} mid-step{_listed(drained.killed)}" if drained.killed else "none killed"
    (log.warning if drained.killed else log.info)(
        "stopped after %.1fs: %d finished their step%s; %s", time.monotonic() - drained.began,
        len(runs), _listed(runs), killed)


def _listed(items: list[str], most: int = 5) -> str:
    """` (a, b, c)` or ` (a, b, c, d, e and 7 more)`, or nothing: a log line stays one line."""
    if not items:
        return ""
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return f" ({', '.join(items[:most])}{more})"


def _s(items: list[str]) -> str:
    return "" if len(items) == 1 else "s"
