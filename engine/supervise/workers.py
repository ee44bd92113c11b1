"""A pool of worker processes, each advancing one run at a time for the supervisor.

Actions run here, never in the supervisor: a hung or crashing action costs one worker,
which the pool kills (SIGKILL) or notices dead and replaces. The supervisor decides
*when* to kill (a step past its timeout); the pool knows *which* process holds which run
and since when. Workers are forked from a forkserver that has already imported the
engine, so a replacement starts in milliseconds. Each worker holds the read end of a
"lifeline" pipe whose only write end is the supervisor's: when the supervisor dies, even
by SIGKILL, the read returns EOF and the worker kills itself mid-step, so no orphan keeps
advancing runs (the kernel's parent-death signal would not do: a worker's parent is the
forkserver, which in turn lives as long as any worker does).

Heartbeats: an action's `ctx.heartbeat()` sends a `Heartbeat` (its run, the worker
clock's now) up the same pipe as the results, at most one per second of the clock per
worker, and only if the pipe has room: a full pipe drops the heartbeat rather than
block the action. The supervisor keeps the latest one per busy worker
(`Worker.beat`) and counts a step's timeout from it when it is later than the step's
start.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from engine.errors import EngineError
from engine.run.clock import Clock
from engine.supervise.message import Message

log = logging.getLogger("ratchet.supervisor")

Outcome = Literal["ok", "locked", "error", "died", "killed"]


@dataclass(frozen=True)
class Job:
    """One call on the Runner: `advance` a run, or `deliver` a message to it."""

    run_id: str
    kind: Literal["advance", "deliver"] = "advance"
    abandoned: str | None = None
    abandoned_seq: int | None = None  # the in-flight step `abandoned` is about
    answers: int | None = None  # for deliver: what the run stood at when the file arrived
    message: Message | None = None
    source_file: str | None = None
    last_seq: int = 0  # the run's last journaled seq when the job was handed over


@dataclass(frozen=True)
class Result:
    """What became of a job. `accepted`/`reason` answer a delivery."""

    job: Job
    outcome: Outcome
    accepted: bool | None = None
    reason: str = ""
    error: str = ""


@dataclass(frozen=True)
class Heartbeat:
    """An action of `run_id` said it is alive at `at` (the worker's clock)."""

    run_id: str
    at: datetime


class Worker:
    """The supervisor's handle on one worker process and the job it holds."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process, self.conn = process, conn
        self.job: Job | None = None
        self.since = 0.0  # time.monotonic() when the job was handed over
        self.beat: datetime | None = None  # the job's latest heartbeat (worker clock)
        self.gone = False  # its pipe reached EOF: nothing more will come

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def current(self) -> Job:
        """The job of a busy worker (what `WorkerPool.busy()` lists)."""
        if self.job is None:
            raise RuntimeError(f"worker {self.pid} holds no job")  # a bug in the caller, not data
        return self.job


class WorkerPool:
    """`size` worker processes; `submit` a job to an idle one, `collect` the results."""

    def __init__(self, size: int, home_root: Path, *, machines_dir: Path = Path("machines")) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self.size = size
        self.home_root = Path(home_root).resolve()
        self.machines_dir = Path(machines_dir).resolve()
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["engine.supervise.workers", "engine.run.runner"])
        self._lifeline_r, self._lifeline_w = self._ctx.Pipe(duplex=False)
        self.workers: list[Worker] = []

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        while len(self.workers) < self.size:
            self.workers.append(self._spawn())

    def _spawn(self) -> Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_serve, args=(child, self._lifeline_r, str(self.home_root), str(self.machines_dir)),
            name="ratchet-worker", daemon=True,
        )
        process.start()
        child.close()
        return Worker(process, parent)

    def stop(self, grace: float) -> tuple[list[Result], list[Job]]:
        """Let busy workers finish for up to `grace` s, then kill the rest.

        Returns (results of jobs that finished meanwhile, jobs that were abandoned).
        """
        deadline = time.monotonic() + grace
        finished = []
        for worker in self.busy():
            while not worker.gone and worker.conn.poll(max(0.0, deadline - time.monotonic())):
                result = _receive(worker)  # None after a heartbeat: wait on for the result
                if result is not None:
                    worker.job = None
                    finished.append(result)
                    break
        abandoned = [w.job for w in self.workers if w.job is not None]
        for worker in self.workers:
            if worker.job is None:
                _send(worker, None)
        for worker in self.workers:
            if worker.job is None:
                worker.process.join(1)
            if worker.process.is_alive():
                worker.process.kill()  # its run is stalled; the next start replays it
                worker.process.join(5)
            worker.conn.close()
        self.workers = []
        return finished, abandoned

    def close(self) -> None:
        """Release the lifeline (after `stop`)."""
        self._lifeline_w.close()
        self._lifeline_r.close()

    # --- jobs -------------------------------------------------------------------------------

    def idle(self) -> list[Worker]:
        return [w for w in self.workers if w.job is None]

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w.job is not None]

    def holding(self, run_id: str) -> Worker | None:
        return next((w for w in self.workers if w.job is not None and w.job.run_id == run_id), None)

    def submit(self, job: Job) -> Worker:
        worker = next(iter(self.idle()), None)
        if worker is None:
            raise RuntimeError("no idle worker")
        worker.job, worker.since, worker.beat = job, time.monotonic(), None
        if not _send(worker, job):
            log.warning("worker %s was dead before its job for run %s", worker.pid, job.run_id)
        return worker

    def waitables(self) -> list[Any]:
        """What to sleep on: each busy worker's pipe and process sentinel."""
        items: list[Any] = []
        for w in self.busy():
            items += [w.conn, w.process.sentinel]
        return items

    def collect(self) -> list[Result]:
        """Results of finished jobs, and a `died` result (plus a replacement) per dead worker."""
        results = []
        for i, worker in enumerate(self.workers):
            if worker.job is None:
                if not worker.process.is_alive():
                    self.workers[i] = self._replace(worker)
                continue
            result = _receive(worker)
            if result is not None:
                worker.job = None
                results.append(result)
            elif not worker.process.is_alive():
                code = worker.process.exitcode
                results.append(Result(worker.job, "died", error=f"worker {worker.pid} exited with {code}"))
                self.workers[i] = self._replace(worker)
        return results

    def kill(self, worker: Worker, why: str) -> Result:
        """SIGKILL a worker (its step hung) and replace it; the job comes back as `killed`."""
        job = worker.job
        if job is None:
            raise RuntimeError("kill() is for busy workers")
        log.warning("killing worker %s holding run %s: %s", worker.pid, job.run_id, why)
        worker.process.kill()
        worker.process.join(5)
        self.workers[self.workers.index(worker)] = self._replace(worker)
        return Result(job, "killed", error=why)

    def _replace(self, worker: Worker) -> Worker:
        worker.conn.close()
        worker.process.join(0)
        return self._spawn()


def _send(worker: Worker, job: Job | None) -> bool:
    try:
        worker.conn.send(job)
        return True
    except (BrokenPipeError, ConnectionResetError, OSError):
        return False


def _receive(worker: Worker) -> Result | None:
    """The job's result if it has come; heartbeats read on the way are kept in `worker.beat`."""
    try:
        while worker.conn.poll():
            message: Result | Heartbeat = worker.conn.recv()  # a worker sends nothing else
            if not isinstance(message, Heartbeat):
                return message
            job = worker.job
            if job is not None and message.run_id == job.run_id:
                worker.beat = message.at if worker.beat is None else max(worker.beat, message.at)
    except (EOFError, OSError):
        worker.gone = True
        return None  # it died mid-answer: collect() reports it as died
    return None


# --- inside the worker process ----------------------------------------------------------


def _hold_lifeline(lifeline: Connection) -> None:
    """Kill this worker as soon as the supervisor is gone (EOF on the lifeline)."""

    def watch() -> None:
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os.kill(os.getpid(), signal.SIGKILL)  # mid-step on purpose: the run is replayed later

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


class _Pulse:
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


def _serve(conn: Connection, lifeline: Connection, home_root: str, machines_dir: str) -> None:
    """Worker main loop: take a job, call the Runner, send the result, until told to stop."""
    _hold_lifeline(lifeline)
    # Ctrl-C reaches the whole process group; the supervisor decides what stops, and when.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from engine.run.clock import clock_from_env
    from engine.run.runner import Runner
    from journal import JournalError, JournalLockedError

    clock = clock_from_env()
    pulse = _Pulse(conn, clock)
    runner = Runner(home_root, clock=clock, machines_dir=Path(machines_dir), heartbeat=pulse.beat)
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
                                          answers=job.answers)
                result = Result(job, "ok", accepted=delivery.accepted, reason=delivery.reason)
            else:
                runner.advance(job.run_id, abandoned=job.abandoned, abandoned_seq=job.abandoned_seq)
                result = Result(job, "ok")
        except JournalLockedError:
            result = Result(job, "locked")
        except (EngineError, JournalError) as exc:  # said plainly; the supervisor logs it
            result = Result(job, "error", error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # the supervisor must hear of every failure, never hang on one
            log.exception("worker: %s of run %s failed", job.kind, job.run_id)
            result = Result(job, "error", error=f"{type(exc).__name__}: {exc}")
        try:
            pulse.send(result)
        except (BrokenPipeError, OSError):
            return
