"""Step timeouts: which busy job is overdue, and how the step it killed is replayed.

A job is overdue when its own step passed the state's `timeout`, or when it made no
progress for `job_timeout` with no step of its own in flight (a hung on_escalate, a
replay). A limit counts from the latest of the step's start (or the job's last record),
the job's hand-over and the action's last heartbeat (`ctx.heartbeat()`): an action that
heartbeats is alive, one that stops is killed a `timeout` after its last beat.

A step_started written before the job was handed over (by a process that died) is not
the job's: the worker replays it first, so its age says nothing about the job. Only a
step this supervisor killed at its limit is replayed as "timeout" (a failed attempt);
any other step left in flight is replayed as "worker died".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from engine.run.clock import Clock, parse_iso
from engine.run.replay import RunState
from engine.supervise.jobs import Job
from engine.supervise.runs import RunTable
from engine.supervise.workers import Worker

JOB_TIMEOUT = 300.0  # a job with no step of its own in flight (replay, on_escalate) may take this long


@dataclass(frozen=True)
class Overdue:
    """Why a busy job is to be killed; `step_seq`: its step past the step's timeout, if that is why."""

    why: str
    step_seq: int | None = None


class StepTimeouts:
    """Judges busy jobs against their limits and remembers the steps killed at theirs."""

    def __init__(self, clock: Clock, *, job_timeout: float = JOB_TIMEOUT) -> None:
        self.clock = clock
        self.job_timeout = job_timeout
        self._handed_over: dict[str, datetime] = {}  # run -> when (clock) its current job was handed over
        self._killed: dict[str, int] = {}  # run -> seq of the step_started killed at its timeout

    def handed_over(self, run_id: str) -> None:
        """A job of the run went to a worker now."""
        self._handed_over[run_id] = self.clock.now()

    def finished(self, run_id: str) -> None:
        """The run's job came back (done, failed, died or killed)."""
        self._handed_over.pop(run_id, None)

    def overdue(self, busy: Iterable[Worker], runs: RunTable) -> Iterator[tuple[Worker, Overdue]]:
        """The busy workers whose job is overdue now, with why (lazily: kill as they come)."""
        now = self.clock.now()
        for worker in busy:
            job = worker.current
            tracked = runs.get(job.run_id)
            if tracked is not None:
                verdict = self.judge(job, tracked.state, worker.beat, now)
                if verdict is not None:
                    yield worker, verdict

    def judge(self, job: Job, state: RunState, beat: datetime | None, now: datetime) -> Overdue | None:
        """Is `job` (on a run now at `state`, last heartbeat `beat`) overdue at `now`?"""
        step = state.in_flight
        handed_over = _age(now, self._handed_over.get(job.run_id, now))
        since_beat = _age(now, beat) if beat is not None else float("inf")
        if step is not None and step.seq > job.last_seq:
            timeout = state.step_timeout
            if timeout is None or min(_age(now, step.ts), handed_over, since_beat) < timeout:
                return None
            why = f"step '{step.state}' attempt {step.attempt} exceeded its timeout of {timeout:g}s"
            if since_beat < _age(now, step.ts):
                why += " since its last heartbeat"
            return Overdue(why, step.seq)
        quiet = min(handed_over, _age(now, state.updated, float("inf")), since_beat)
        if quiet < self.job_timeout:
            return None
        return Overdue(f"{job.kind} made no progress for {self.job_timeout:g}s with no step of its own in flight")

    def killed(self, run_id: str, overdue: Overdue) -> None:
        """The run's worker is being killed for `overdue`: a step killed at its limit is
        replayed as "timeout"."""
        if overdue.step_seq is not None:
            self._killed[run_id] = overdue.step_seq

    def advance_job(self, run_id: str, state: RunState) -> Job:
        """The job that advances the run, saying how its in-flight step (if any) was abandoned."""
        killed = self._killed.pop(run_id, None)
        step = state.in_flight
        if step is None:
            reason = None
        elif step.seq == killed:
            reason = "timeout"  # the very step this supervisor killed at its limit
        else:
            reason = "worker died"  # nobody holds it (else: locked): its worker is gone
        return Job(run_id, "advance", abandoned=reason, last_seq=state.last_seq,
                   abandoned_seq=step.seq if step is not None else None)


def _age(now: datetime, then: datetime | str, bad: float = 0.0) -> float:
    """Seconds from `then` (a datetime or a journal ts) to `now`; `bad` for a ts that does not parse."""
    try:
        return (now - (parse_iso(then) if isinstance(then, str) else then)).total_seconds()
    except (ValueError, TypeError):
        return bad
