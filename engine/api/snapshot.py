"""`RunSnapshot`: one run as the Python API hands it to an application (a typed value).

Built from the same row `ratchet status` shows (engine.supervise.status) plus the run's
data and input, from one read of its journal, so an application and `ratchet status
--json` never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.run.clock import parse_iso
from engine.run.replay import RunState
from engine.run.status import RunStatus
from engine.supervise.status import JournalStatus, StatusRow


@dataclass(frozen=True)
class Escalation:
    """Why a run is parked for a person (`ratchet resolve` answers it)."""

    reason: str  # "timeout", "retries exhausted", "unknown outcome", "code changed", ...
    detail: str = ""


@dataclass(frozen=True)
class QueuedMessage:
    """A message sent to the run and not applied yet (an inbox file, or a PostgreSQL row)."""

    asks: str  # the trigger ("approve"), or "resolve skip approve", "cancel", "upgrade"
    by: str  # who it says sent it (proven only when the supervisor applies it)
    since: datetime  # when it was written (a file) or reached the store (a row), UTC
    age_s: float  # how long it has waited, as of the snapshot
    key: str  # the key its delivery will be journaled under (`source_file`), or the inbox file's name
    where: str  # "inbox" (not claimed yet), "claimed" (by a supervisor), "row" (PostgreSQL)


@dataclass(frozen=True)
class RunSnapshot:
    """Where one run stands now: its state and status, what and whom it waits on, until
    when, why it escalated, its data. A value: call `Ratchet.get` again for a newer one.

    `status` is a `RunStatus` (a `StrEnum`: compare with "waiting" as text), or
    `JournalStatus.DAMAGED` / `STARTING` for a journal that holds no run to show (`error`
    says why). The fields after `data` are the facts `ratchet status` adds to the journal's
    word: `held` (a process moves it now), `stalled` (it should be moving and nobody holds
    it), `overdue_s` (past its deadline or retry time), `code_changed` (modules changed
    since it started), `archived` (retired by `ratchet archive`), `queued` (messages sent to
    it and not applied yet, oldest first).
    """

    id: str
    machine: str
    version: int | str
    state: str
    status: RunStatus | JournalStatus
    waiting_on: tuple[str, ...] = ()  # the triggers it waits for, while waiting
    approvers: tuple[str, ...] = ()  # who may send them (empty: anyone)
    deadline: datetime | None = None  # the wait's deadline, or when the next retry is due (UTC)
    escalation: Escalation | None = None  # while escalated
    outcome: str | None = None  # a final state's outcome
    data: dict[str, Any] = field(default_factory=dict)  # the run's accumulated data
    input: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    in_flight: bool = False  # a step started and its outcome is not journaled yet
    seq: int = 0  # the last record's seq (pass it as `Ratchet.wait(after=...)`)
    updated: datetime | None = None  # the last record's time
    held: bool = False
    stalled: bool = False
    overdue_s: float | None = None
    retry_attempt: int | None = None
    retry_attempts: int | None = None
    code_changed: tuple[str, ...] = ()
    archived: bool = False
    error: str | None = None  # a damaged journal: what is wrong with it
    parent: str | None = None  # the run that spawned this one (fan-out)
    children: str | None = None  # a parent in its spawning state: "2/5 finished, 3 live"
    children_escalated: tuple[str, ...] = ()  # its live children escalated now: "ID: reason"
    queued: tuple[QueuedMessage, ...] = ()  # sent, not applied yet (refusals are in its journal)

    @property
    def ended(self) -> bool:
        """Finished or cancelled: it takes no more messages."""
        return self.status in (RunStatus.FINISHED, RunStatus.CANCELLED)


def snapshot_of(row: StatusRow, state: RunState | None) -> RunSnapshot:
    """The snapshot of a status row and the RunState folded in the same read (None: damaged)."""
    escalation = Escalation(row.escalation, row.escalation_detail or "") if row.escalation else None
    return RunSnapshot(
        id=row.run_id, machine=row.machine, version=row.version, state=row.state, status=row.status,
        waiting_on=tuple(row.waiting_on or ()), approvers=tuple(row.approvers or ()),
        deadline=parse_iso(row.deadline) if row.deadline else None, escalation=escalation, outcome=row.outcome,
        data=dict(state.data) if state else {}, input=dict(state.input) if state else {},
        attempt=row.attempt, in_flight=row.in_flight, seq=row.records,
        updated=parse_iso(row.updated) if row.updated else None, held=row.held, stalled=row.stalled,
        overdue_s=row.overdue_s, retry_attempt=row.retry_attempt, retry_attempts=row.retry_attempts,
        code_changed=tuple(row.code_changed), archived=row.archived, error=row.error,
        parent=row.parent, children=row.children, children_escalated=tuple(row.children_escalated),
        queued=tuple(QueuedMessage(asks=q["asks"], by=q["by"], since=parse_iso(q["since"]), age_s=q["age_s"],
                                   key=q["key"], where=q["where"]) for q in row.queued),
    )
