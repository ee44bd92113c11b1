"""What `ratchet status` shows: one row per run, folded from its journal.

Read-only and lock-free: safe while a supervisor advances the runs. A damaged journal
gives a row with `error` set instead of hiding the run or failing the whole listing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from engine.home import Home
from engine.run.clock import iso
from engine.run.replay import RunState, fold
from engine.run.status import RunStatus
from journal import JournalError


class JournalStatus(StrEnum):
    """A row's status when its journal holds no run to show (else the run's `RunStatus`)."""

    DAMAGED = "damaged"    # the journal cannot be read or folded: the row's `error` says why
    STARTING = "starting"  # created, but its `run_started` record is not durable yet


@dataclass
class StatusRow:
    """One run as people need to see it: where it is, what it waits for, and for whom.

    One field per column of `ratchet status` and key of `status --json` (a value, not state).
    """

    run_id: str
    machine: str = ""
    version: int | str = ""
    state: str = ""
    status: RunStatus | JournalStatus = JournalStatus.STARTING  # a row that knows only its id
    waiting_on: list[str] | None = None  # triggers, when waiting
    approvers: list[str] | None = None
    deadline: str | None = None  # waiting deadline or next retry (UTC ISO)
    attempt: int = 0
    in_flight: bool = False
    escalation: str | None = None  # the reason, while escalated
    escalation_detail: str | None = None
    outcome: str | None = None
    updated: str = ""
    records: int = 0
    error: str | None = None
    archived: bool = False  # read from the archive (`ratchet archive`), not from the runs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_of(run_id: str, state: RunState) -> StatusRow:
    """The status row of a folded run."""
    escalation = state.escalation
    return StatusRow(
        run_id=run_id,
        machine=state.machine,
        version=state.version,
        state=state.state,
        status=state.status,
        waiting_on=list(state.triggers) if state.status == RunStatus.WAITING else None,
        approvers=list(state.approvers) if state.status == RunStatus.WAITING and state.approvers else None,
        deadline=iso(state.deadline) if state.deadline else None,
        attempt=state.attempt,
        in_flight=state.in_flight is not None,
        escalation=escalation.reason if escalation else None,
        escalation_detail=(escalation.detail or None) if escalation else None,
        outcome=state.outcome,
        updated=state.updated,
        records=state.last_seq,
    )


def status_rows(home: Home, run_ids: list[str] | None = None) -> list[StatusRow]:
    """Rows for `run_ids` (default: every run in the home), in id order."""
    rows: list[StatusRow] = []
    for run_id in run_ids if run_ids is not None else home.store.run_ids():
        try:
            state = fold(home.store.read(run_id).records)
        except JournalError as exc:
            rows.append(StatusRow(run_id=run_id, status=JournalStatus.DAMAGED, error=str(exc)))
            continue
        except Exception as exc:  # a decodable journal that cannot be folded: one row, not a crash
            error = f"{home.store.where(run_id)}: cannot fold ({type(exc).__name__}: {exc}); run 'ratchet verify'"
            rows.append(StatusRow(run_id=run_id, status=JournalStatus.DAMAGED, error=error))
            continue
        if not state.run_id:
            rows.append(StatusRow(run_id=run_id, status=JournalStatus.STARTING))
            continue
        rows.append(row_of(run_id, state))
    return rows


def archived_rows(home: Home, run_ids: list[str] | None = None) -> list[StatusRow]:
    """Rows of archived runs (`run_ids`, default: all of them), in id order; never a supervisor's
    business (`ratchet status --all` only)."""
    rows: list[StatusRow] = []
    for run_id in run_ids if run_ids is not None else home.store.archived_ids():
        try:
            row = row_of(run_id, fold(record for _, record in home.store.archived_lines(run_id)))
        except Exception as exc:  # a damaged archive: one row saying so, not a crash
            row = StatusRow(run_id=run_id, status=JournalStatus.DAMAGED, error=str(exc))
        row.archived = True
        rows.append(row)
    return rows
