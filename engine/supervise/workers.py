"""A pool of worker processes, each advancing one run at a time for the supervisor.

Actions run here, never in the supervisor: a hung or crashing action costs one worker,
which the pool kills (SIGKILL) or notices dead and replaces. The supervisor decides
*when* to kill (a step past its timeout); the pool knows *which* process holds which run
and since when. Workers are forked by the supervisor's fork server (engine.supervise.forkserver:
a copy of the supervisor forked before any thread, with the engine loaded), so a worker,
the first as a replacement, starts in a millisecond or two and no interpreter is exec'd.
Should that server be gone (killed on its own) or never started (a pool used outside
`Supervisor.run`, or in a process that ran threads first), workers come from
multiprocessing's forkserver instead: a fresh interpreter, slower to start, as safe. Each worker holds the read end of a
"lifeline" pipe whose only write end is the supervisor's: when the supervisor dies, even
by SIGKILL, the read returns EOF and the worker kills itself mid-step, so no orphan keeps
advancing runs (the kernel's parent-death signal would not do: a worker's parent is the
fork server, which in turn lives as long as any worker does).

What a worker does inside its process (the job loop, the lifeline, heartbeats) is
engine.supervise.worker; what travels on the pipe (jobs, results, heartbeats) is
engine.supervise.jobs. The supervisor keeps each busy worker's latest heartbeat
(`Worker.beat`) and counts a step's timeout from it when it is later than the step's start.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from datetime import datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from engine.supervise import forkserver
from engine.supervise.jobs import Heartbeat, Job, Result
from engine.supervise.worker import serve

log = logging.getLogger("ratchet.supervisor")

# Only for multiprocessing's forkserver (the fallback): a worker started from the `ratchet`
# console script re-runs that script (as __mp_main__), which imports engine.cli.launch: loaded
# once there, that costs a worker nothing.
FALLBACK_PRELOAD = ["engine.supervise.worker", "engine.run.runner", "engine.cli.launch"]

class Worker:
    """The supervisor's handle on one worker process and the job it holds."""

    def __init__(self, process: multiprocessing.process.BaseProcess | forkserver.ForkedProcess,
                 conn: Connection) -> None:
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
        self._lifeline_r, self._lifeline_w = self._ctx.Pipe(duplex=False)
        self.workers: list[Worker] = []

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        while len(self.workers) < self.size:
            self.workers.append(self._spawn())

    def _spawn(self) -> Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process: multiprocessing.process.BaseProcess | forkserver.ForkedProcess | None = forkserver.spawn(
            child.fileno(), self._lifeline_r.fileno(), str(self.home_root), str(self.machines_dir))
        if process is None:
            self._ctx.set_forkserver_preload(FALLBACK_PRELOAD)  # only now: it imports multiprocessing.forkserver
            process = self._ctx.Process(
                target=serve, args=(child, self._lifeline_r, str(self.home_root), str(self.machines_dir)),
                name="ratchet-worker", daemon=True,
            )
            process.start()
        child.close()
        return Worker(process, parent)

    def drain(self) -> list[Worker]:
        """A graceful stop: SIGTERM each busy worker, whose Runner then finishes the step in
        hand and starts no other (engine.supervise.worker). The workers signalled."""
        signalled = []
        for worker in self.busy():
            if not worker.gone and worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # it died meanwhile: settle() sees it
                    os.kill(worker.pid, signal.SIGTERM)
                signalled.append(worker)
        return signalled

    def settle(self, timeout: float, wake: Any) -> list[Result]:
        """While stopping: results of busy workers that come within `timeout` s (sooner if
        `wake` is ready), and `died` for a worker whose pipe closed. Spawns no replacement.

        A worker's death is read from its pipe, not its process sentinel: a fork server killed
        too (a SIGTERM to the whole group) makes every sentinel report an exit of 255.
        """
        busy = {worker.conn: worker for worker in self.busy() if not worker.gone}
        results = []
        for conn in wait([*busy, wake], max(0.0, timeout)):
            worker = busy.get(conn)  # type: ignore[call-overload]  # wake is not a Connection
            if worker is None:
                continue
            job, result = worker.current, _receive(worker)
            if result is None and worker.gone:
                result = Result(job, "died", error=f"worker {worker.pid} died while stopping")
            if result is not None:
                worker.job = None
                results.append(result)
        return results

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
            if worker.job is not None:
                _kill(worker)  # its run is stalled; the next start replays it
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
        """What to sleep on: each busy worker's pipe, readable with its result or at EOF when
        it died (not its process sentinel, which a dead fork server leaves ever readable; a
        death the pipe does not show is found by `collect` on the next wake-up)."""
        return [w.conn for w in self.busy()]

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
            elif _dead(worker):
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
        _kill(worker)
        self.workers[self.workers.index(worker)] = self._replace(worker)
        return Result(job, "killed", error=why)

    def _replace(self, worker: Worker) -> Worker:
        worker.conn.close()
        worker.process.join(0)
        return self._spawn()


def _dead(worker: Worker) -> bool:
    """Did this busy worker die? Its pipe at EOF says so. Its process handle alone is not
    believed: when the fork server dies (a SIGTERM to the whole group, as systemd's default
    KillMode sends) every handle reports an exit of 255, so the pid must be gone too. (The
    pipe alone is not enough either: a process an action forked may hold it open.)"""
    if worker.gone:
        return True
    if worker.process.is_alive() or worker.pid is None:
        return False
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return True
    return False


def _kill(worker: Worker) -> None:
    """SIGKILL by pid, unless its pipe says it is dead already: the process handle would not
    signal a worker it took for dead when its fork server died (see WorkerPool.settle)."""
    if not worker.gone and worker.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)
    worker.process.join(5)


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
