"""What travels between the supervisor and its workers: jobs, their results, heartbeats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from engine.trust.sender import Sender

if TYPE_CHECKING:  # a message's model (pydantic) is loaded by unpickling a delivery, not by every worker
    from engine.supervise.message import Message

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
    sender: Sender | None = None  # for deliver: who sent the message, as the mailroom proved it
    children: tuple[str, ...] | None = None  # for a parent's advance: children seen ended (engine.supervise.children)
    journal_only: bool = False  # for deliver: journal it, call no code (the mail lane, engine.supervise.lane)


@dataclass(frozen=True)
class Result:
    """What became of a job. `accepted`/`reason` answer a delivery."""

    job: Job
    outcome: Outcome
    accepted: bool | None = None
    reason: str = ""
    error: str = ""
    fsync_s: tuple[float, ...] = ()  # the job's journal fsyncs, timed in the worker (for metrics)


@dataclass(frozen=True)
class Heartbeat:
    """An action of `run_id` said it is alive at `at` (the worker's clock)."""

    run_id: str
    at: datetime
