"""A supervisor's head start: the runs a crash left moving go to workers before its loop is imported.

After a crash, the runs left moving (a step in flight when the process died, or a next
step owed) are what a restarting supervisor must get going first. `head_start` reads the
journals, starts the worker pool and hands those runs to it; only then does `ratchet
supervise` import and start the rest of the loop (the sealing key's check, the mailroom,
the watches, the mail lane, the agenda), while the workers journal their first records
on the other core (README, "Performance").

It takes only runs the loop would dispatch first anyway, and only where nothing may come
before them:

- the file store: on PostgreSQL, messages and due deadlines are rows that supervisors on
  other hosts share and claim; there the loop starts as before;
- an empty inbox (and nothing claimed by a supervisor that died): a cancel waiting there
  must reach its run before a step does, as the loop delivers cancels first;
- runs without children: a parent's advance carries what the loop learns of its
  children's ends (engine.supervise.children).

The table and the pool then become the supervisor's own (`Supervisor(head_start=...)`).
Its first scan comes after its watches start and reads only what changed since this one,
so a journal written in between is seen then; so is an inbox file dropped in between
(the mailroom scans the inbox after the watch starts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.faults import crash_point
from engine.home import Home
from engine.run.clock import clock_from_env
from engine.run.replay import RunState
from engine.run.status import RunStatus
from engine.supervise.jobs import Job
from engine.supervise.runs import RunTable
from engine.supervise.timeouts import StepTimeouts
from engine.supervise.workers import WorkerPool
from journal.messages import message_box


@dataclass
class HeadStart:
    """The run table as first read, the pool, and the jobs already handed to it."""

    runs: RunTable
    pool: WorkerPool
    jobs: list[Job] = field(default_factory=list)

    def abandon(self, grace: float) -> None:
        """The supervisor will not start after all: stop as a graceful stop does (each busy
        worker finishes the step in hand and starts no other, within `grace` s, or is killed:
        a crash its run replays), and end the workers."""
        self.pool.drain()
        self.pool.stop(grace)
        self.pool.close()


def owes_advance(state: RunState) -> bool:
    """Does the run need a worker now, with no message and no deadline (a step to take or
    to finish, or an owed on_cancel of an ended run)?"""
    return state.status == RunStatus.RUNNING or (state.ended and state.todo is not None)


def head_start(home: Home, *, workers: int, machines_dir: Path) -> HeadStart | None:
    """Scan the runs, start the pool and hand it the runs left moving; None (and nothing
    started) where the loop must come first (see the module's docstring)."""
    if home.store.timers is not None or message_box(home.store) is not None:  # a shared store (PostgreSQL)
        return None
    home.ensure()  # refuses symlinked inbox folders, before anything starts
    if not _inbox_empty(home):
        return None
    runs = RunTable(home)
    runs.scan()
    pool = WorkerPool(workers, home.root, machines_dir=machines_dir)
    pool.start()
    started = HeadStart(runs, pool)
    fresh = StepTimeouts(clock_from_env())  # a new supervisor has killed no step: the job its loop would make
    for run_id in runs.ids():
        if not pool.idle():
            break
        tracked = runs[run_id]
        if tracked.broken or tracked.state.brood is not None or not owes_advance(tracked.state):
            continue
        job = fresh.advance_job(run_id, tracked.state)
        pool.submit(job)
        started.jobs.append(job)
    crash_point("head_start")  # tests look at this instant (tests/integration/test_recovery_imports.py)
    return started


def _inbox_empty(home: Home) -> bool:
    """No file in inbox/ (its folders aside) and none claimed in inbox/.claimed/."""
    with os.scandir(home.inbox) as entries:
        if any(not entry.is_dir(follow_symlinks=False) for entry in entries):
            return False
    with os.scandir(home.inbox_claimed) as entries:
        return next(entries, None) is None
