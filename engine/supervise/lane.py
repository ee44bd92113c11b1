"""The mail lane: a person's answer never waits behind machine work.

Journaling a delivery is one append, so it needs no free worker of the pool that runs
steps. The lane is a worker process of its own (a `WorkerPool` of one, with the same
lifeline and kill -9 safety as the others) that takes only deliveries, and only to runs
at rest (waiting, escalated, sleeping before a retry, or ended with nothing owed) that
no worker holds. It delivers `journal_only` (engine.run.runner.Runner.deliver): the
trigger or the refusal, and whatever follows without calling code (a transition, a
`waiting`, a `run_finished`), stopping before the next `step_started`,
`compensation_started` or `escalated`, or a spawn (creating child runs). The run then owes that move, and the supervisor
dispatches it to the pool as usual. So the lane is never busy for longer than a few
appends, whatever the steps do.

Nothing else changes: one job per run at a time across both pools (the supervisor asks
`holding` of both), the run's journal lock is still the single writer, and the file is
filed by the mailroom only after the worker's result, exactly once (delivery is
idempotent on the claimed key: a crash between the journaled delivery and the filing is
finished by the next start, which finds the key in the journal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.faults import crash_point
from engine.run.status import RunStatus
from engine.supervise.jobs import Job, Result
from engine.supervise.mailroom import Mailroom
from engine.supervise.runs import RunTable, Tracked
from engine.supervise.workers import Worker, WorkerPool

LANE_GRACE = 5.0  # seconds a delivery in hand may take to finish at shutdown (a few appends)
_AT_REST = (RunStatus.WAITING, RunStatus.ESCALATED, RunStatus.RETRYING)


def at_rest(tracked: Tracked | None) -> bool:
    """Is the run waiting on something outside, with no step owed now? (A run that is
    moving, or ended with an on_cancel owed, is the pool's: its mail waits for it.)"""
    if tracked is None or tracked.broken:
        return False
    state = tracked.state
    if state.in_flight is not None:
        return False
    return state.status in _AT_REST or (state.ended and state.todo is None)


class MailLane:
    """One worker process that journals inbox deliveries for runs at rest."""

    def __init__(self, home_root: Path, *, machines_dir: Path = Path("machines")) -> None:
        self.pool = WorkerPool(1, home_root, machines_dir=machines_dir)

    def start(self) -> None:
        self.pool.start()

    def holding(self, run_id: str) -> Worker | None:
        return self.pool.holding(run_id)

    def busy(self) -> list[Worker]:
        return self.pool.busy()

    def waitables(self) -> list[Any]:
        return self.pool.waitables()

    def dispatch(self, mailroom: Mailroom, runs: RunTable, *, held: Callable[[str], bool],
                 held_back: Callable[[str], bool]) -> list[Job]:
        """Hand the oldest file of the first run at rest that nobody holds to the lane, if
        it is idle. Returns the jobs handed over."""
        handed: list[Job] = []
        for run_id in mailroom.runs_with_mail():
            if not self.pool.idle():
                break
            if held(run_id) or held_back(run_id) or not at_rest(runs.get(run_id)):
                continue
            job = mailroom.next_delivery(run_id)
            if job is not None:
                job = dataclasses.replace(job, journal_only=True)
                self.pool.submit(job)
                handed.append(job)
        return handed

    def collect(self) -> list[Result]:
        results = self.pool.collect()
        for result in results:
            if result.outcome == "ok":
                # Journaled, not yet filed: a crash here must leave the file applied once.
                crash_point("lane_delivered")
        return results

    def stop(self, grace: float) -> list[Result]:
        """Let the delivery in hand finish (within `grace`, at most LANE_GRACE), then stop.
        An abandoned one stays claimed; the next start finishes it under the same key."""
        finished, _abandoned = self.pool.stop(min(grace, LANE_GRACE))
        return finished

    def close(self) -> None:
        self.pool.close()
