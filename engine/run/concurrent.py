"""Drive many runs at once in one process: lanes (threads), each with a Runner of its own.

One process that drives one run at a time waits on each fsync in turn; with several lanes,
one lane's engine work overlaps another's fsync (and the disk, or the database, may merge
syncs that wait at the same moment), as DBOS queues with a concurrency and Temporal
workers with several activity slots do. What lanes share is the home and its store; each
has its own Runner, because a Runner keeps one run's session state (its sealer's pending
side files, its RunCache, the `on_record` it swaps while creating children).

A job launches a run (`Launch`: machine, input, id) or advances an existing one (its id).
Jobs are taken in order; jobs naming the same run go to one lane, one after another, so
one run's steps never overlap (its journal lock would refuse a second writer anyway).
Each job is driven until its run rests: it waits, ends, escalates, or must sleep before a
retry (`Runner.launch` / `Runner.advance`); children a run spawns are created, not
driven (drive them by id, or let a supervisor). A job that raises fails only its own
slot: the exception is returned there, with its traceback.

`drain()` is a graceful stop, safe from a signal handler: every lane's step in hand
finishes and its outcome is journaled, no lane journals a next `step_started`, and jobs
not begun are returned as `NotDrivenError`. A drained run resumes at its state's entry
on its next advance (Runner.drain). An exception in the thread that waits on the lanes
(Ctrl-C's KeyboardInterrupt) drains them too, and waits for their steps in hand, before
it goes on.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.home import Home
from engine.run.clock import Clock, clock_from_env
from engine.run.replay import RunState
from engine.run.runner import Runner

DEFAULT_THREADS = 8


@dataclass(frozen=True)
class Launch:
    """Start a run of `machine` (a path, or a name in machines_dir) and drive it; an existing
    `run_id` of the same machine is just advanced (as `Runner.launch`)."""

    machine: str | Path
    input: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    by: str | None = None


Job = Launch | str  # a str: advance the run of that id
Outcome = RunState | BaseException


class NotDrivenError(EngineError):
    """A job the driver never began: it was drained first."""

    def __init__(self, job: Job) -> None:
        self.job = job
        what = job if isinstance(job, str) else (job.run_id or f"a new run of {job.machine}")
        super().__init__(f"{what}: not driven, the driver was drained first; hint: drive it again")


class Driver:
    """Drives jobs over `threads` lanes, each a thread with its own Runner on one shared home.

    Reusable: `drive` may be called again (lanes keep their Runners, and so their caches).
    Not reentrant: one `drive` at a time.
    """

    def __init__(self, home: Home | Path | str, *, threads: int = DEFAULT_THREADS, clock: Clock | None = None,
                 machines_dir: Path | str = Path("machines"), sealing: bool = True) -> None:
        if threads < 1:
            raise ValueError(f"threads={threads}: at least one lane is needed; hint: threads={DEFAULT_THREADS}")
        self.home = home if isinstance(home, Home) else Home(home)
        self.threads = threads
        self.clock = clock or clock_from_env()
        self.home.store.reserve(threads)  # a pooled store (PostgreSQL): room for every lane's writer and reads
        self.runners = [Runner(self.home, clock=self.clock, machines_dir=Path(machines_dir), sealing=sealing)
                        for _ in range(threads)]
        self._drained = threading.Event()

    def drive(self, jobs: Iterable[Job]) -> list[Outcome]:
        """Drive every job until its run rests; one outcome per job, in the jobs' order: the
        run's state, or what its job raised (NotDrivenError for a job never begun)."""
        jobs = list(jobs)
        outcomes: list[Outcome | None] = [None] * len(jobs)
        todo: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        for group in _groups(jobs):
            todo.put(group)
        # Each lane says when it is done with an Event: Thread.join interrupted by an exception
        # (Ctrl-C) may take a live thread for stopped (CPython 3.11, bpo-45274's fix), and
        # the interrupt must not leave a lane running its step while the caller goes on.
        lanes = [(threading.Thread(target=self._lane, args=(runner, jobs, todo, outcomes, done),
                                   name=f"ratchet-lane-{n}", daemon=True), done)
                 for n, runner in enumerate(self.runners[:max(1, min(self.threads, len(jobs)))])
                 for done in [threading.Event()]]
        try:
            for lane, _ in lanes:
                lane.start()
            for _, done in lanes:
                while not done.wait(0.2):  # a timeout keeps the main thread able to run signal handlers
                    pass
        except BaseException:  # Ctrl-C without draining_on, or a signal handler's exception: stop gracefully
            self.drain()
            for lane, done in lanes:
                if lane.ident is not None:  # it runs (or ran); one not yet running will see the drain
                    done.wait()
            raise
        return [o if o is not None else NotDrivenError(jobs[i]) for i, o in enumerate(outcomes)]

    def drain(self) -> None:
        """Begin no job, and no step, from now on (for good): each lane's step in hand finishes
        and is journaled, then `drive` returns. Safe from a signal handler or another thread."""
        self._drained.set()
        for runner in self.runners:
            runner.drain()

    @property
    def drained(self) -> bool:
        return self._drained.is_set()

    @contextmanager
    def draining_on(self, *signals: signal.Signals) -> Iterator[None]:
        """Within the block, each of `signals` (say SIGINT and SIGTERM) drains the driver instead
        of its usual effect; the previous handlers come back after. Only the main thread may
        set handlers: from another thread this does nothing (drain() the driver yourself)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {sig: signal.signal(sig, lambda _sig, _frame: self.drain()) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)

    def _lane(self, runner: Runner, jobs: Sequence[Job], todo: queue.SimpleQueue[list[int]],
              outcomes: list[Outcome | None], done: threading.Event) -> None:
        try:
            while not self._drained.is_set():
                try:
                    group = todo.get_nowait()
                except queue.Empty:
                    return
                for i in group:
                    if self._drained.is_set():
                        return
                    outcomes[i] = _drive_one(runner, jobs[i])
        finally:
            done.set()


def _drive_one(runner: Runner, job: Job) -> Outcome:
    try:
        if isinstance(job, Launch):
            return runner.launch(job.machine, job.input, run_id=job.run_id, by=job.by)
        return runner.advance(job)
    except BaseException as exc:  # one run's failure is its own: returned in its slot, traceback kept
        return exc


def _groups(jobs: Sequence[Job]) -> list[list[int]]:
    """Job indexes grouped by the run they name (a launch without an id is a run of its own),
    groups in the order of their first job."""
    groups: dict[object, list[int]] = {}
    for i, job in enumerate(jobs):
        key: object = job if isinstance(job, str) else (job.run_id or i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def drive_many(home: Home | Path | str, jobs: Iterable[Job], *, threads: int = DEFAULT_THREADS,
               clock: Clock | None = None, machines_dir: Path | str = Path("machines"),
               sealing: bool = True) -> list[Outcome]:
    """`Driver(home, ...).drive(jobs)`: drive the jobs over `threads` lanes, one outcome per job."""
    return Driver(home, threads=threads, clock=clock, machines_dir=machines_dir, sealing=sealing).drive(jobs)
