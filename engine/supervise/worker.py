"""Inside one worker process: take a job, call the Runner, send back the result.

A worker holds the read end of the supervisor's "lifeline" pipe: when the supervisor
dies, even by SIGKILL, the read returns EOF and the worker kills itself mid-step, so no
orphan keeps advancing runs (the kernel's parent-death signal would not do: a worker's
parent is the fork server, engine.supervise.forkserver, which lives as long as the supervisor does).

A graceful stop: the supervisor sends SIGTERM to a busy worker, whose handler asks its
Runner to drain (`Runner.drain`): the step in hand finishes, its outcome and transition
are journaled, no new step starts, and the job's result goes back as usual. The handler
is installed first thing, and SIGINT (Ctrl-C reaches the whole process group) is ignored:
the supervisor decides what stops, and when.

Heartbeats: an action's `ctx.heartbeat()` sends a `Heartbeat` (its run, the worker
clock's now) up the same pipe as the results, at most one per second of the clock,
and only if the pipe has room: a full pipe drops the heartbeat rather than block the
action.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import signal
import threading
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError
from engine.run.clock import Clock
from engine.supervise.jobs import Heartbeat, Result

if TYPE_CHECKING:
    from engine.run.runner import Runner

log = logging.getLogger("ratchet.supervisor")


def _hold_lifeline(lifeline: Connection) -> None:
    """Kill this worker as soon as the supervisor is gone (EOF on the lifeline)."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):  # EOF: the supervisor is gone
            lifeline.recv()
        os.kill(os.getpid(), signal.SIGKILL)  # mid-step on purpose: the run is replayed later

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


class Pulse:
    """The worker's end of the pipe, shared by its job loop and the actions' heartbeats.

    `lock` keeps a heartbeat (maybe sent from an action's own thread) from interleaving
    with a result. `beat` never waits: it drops the heartbeat when the lock is busy, when
    one was sent less than a second ago (by the clock), or when the pipe has no room.
    """

    def __init__(self, conn: Connection, clock: Clock) -> None:
        self.conn, self.clock = conn, clock
        self.lock = threading.Lock()
        self.run_id: str | None = None  # the run of the job in hand; None between jobs
        self._sent: datetime | None = None

    def beat(self) -> None:
        if self.run_id is None or not self.lock.acquire(blocking=False):
            return
        try:
            run_id = self.run_id
            if run_id is None:
                return
            now = self.clock.now()
            if self._sent is not None and 0 <= (now - self._sent).total_seconds() < 1:
                return
            if not _has_room(self.conn):
                return
            self.conn.send(Heartbeat(run_id, now))
            self._sent = now
        except (OSError, EngineError) as exc:  # a heartbeat must never fail the action
            log.debug("worker: heartbeat of run %s dropped: %s", self.run_id, exc)
        finally:
            self.lock.release()

    def send(self, result: Result) -> None:
        with self.lock:
            self.run_id = None
            self.conn.send(result)


def _has_room(conn: Connection) -> bool:
    """Can a small message be written without blocking? (A Unix socket reports POLLOUT
    only while at most a quarter of its send buffer is used: ample for a heartbeat.)"""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLOUT)
    return any(events & select.POLLOUT for _, events in poller.poll(0))


def serve(conn: Connection, lifeline: Connection, home_root: str, machines_dir: str) -> None:
    """Worker main loop: take a job, call the Runner, send the result, until told to stop."""
    drained = threading.Event()  # SIGTERM came (maybe before the Runner exists)
    runners: list[Runner] = []

    def drain(*_: object) -> None:
        drained.set()
        for runner in runners:
            runner.drain()

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _hold_lifeline(lifeline)
    from engine.run.clock import clock_from_env
    from engine.run.runner import Runner
    from journal import JournalError, JournalLockedError
    from journal import writer as journal_writer

    clock = clock_from_env()
    pulse = Pulse(conn, clock)
    fsyncs: list[float] = []  # this job's journal fsyncs, sent back with its result (for metrics)
    journal_writer.on_sync = fsyncs.append
    runner = Runner(home_root, clock=clock, machines_dir=Path(machines_dir), heartbeat=pulse.beat)
    runners.append(runner)
    if drained.is_set():
        runner.drain()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        pulse.run_id = job.run_id
        try:
            if job.kind == "deliver":
                delivery = runner.deliver(job.run_id, job.message, source_file=job.source_file,
                                          answers=job.answers, sender=job.sender,
                                          journal_only=job.journal_only)
                result = Result(job, "ok", accepted=delivery.accepted, reason=delivery.reason)
            else:
                runner.advance(job.run_id, abandoned=job.abandoned, abandoned_seq=job.abandoned_seq,
                               children=job.children)
                result = Result(job, "ok")
        except JournalLockedError:
            result = Result(job, "locked")
        except (EngineError, JournalError) as exc:  # said plainly; the supervisor logs it
            result = Result(job, "error", error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # the supervisor must hear of every failure, never hang on one
            log.exception("worker: %s of run %s failed", job.kind, job.run_id)
            result = Result(job, "error", error=f"{type(exc).__name__}: {exc}")
        result, fsyncs[:] = dataclasses.replace(result, fsync_s=tuple(fsyncs)), []
        try:
            pulse.send(result)
        except (BrokenPipeError, OSError):
            return
