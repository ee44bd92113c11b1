"""What `ratchet status` shows: one row per run, folded from its journal.

Read-only and lock-free: safe while a supervisor advances the runs. A damaged journal
gives a row with `error` set instead of hiding the run or failing the whole listing.

Besides the journal, a row says what only the present can tell: whether a process holds
a run that should be moving (`held`; else it is `stalled`: no worker has it), how long a
wait or a retry is past its time (`overdue_s`, by the clock), and which modules its
definition names have changed since it started (`code_changed`, from the fingerprints
in `run_started`; each module is hashed once per listing), and the messages sent to it and
not applied yet (`queued`: engine.supervise.queued, one look at the inbox and the store's
rows per listing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.definition.fingerprint import CodeCheck
from engine.home import Home
from engine.run.clock import clock_from_env, iso
from engine.run.replay import RunState, fold
from engine.run.status import RunStatus
from engine.supervise.queued import Queued, queued_index, shown_for
from journal import Cursor, JournalError


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
    held: bool = False  # a process holds the run's lock now (asked only of runs that should be moving)
    stalled: bool = False  # it should be moving, and no process holds it: `ratchet supervise` resumes it
    overdue_s: float | None = None  # seconds past its wait's deadline, or past its retry's due time
    retry_attempt: int | None = None  # the attempt a scheduled retry will make...
    retry_attempts: int | None = None  # ...of this many (the state's retry policy)
    code_changed: list[str] = field(default_factory=list)  # modules changed since the run started
    archived: bool = False  # read from the archive (`ratchet archive`), not from the runs
    owes: str | None = None  # an ended run's work still owed ("on_cancel"): it, too, can be held or stalled
    stands_at: int = 0  # the seq of the `waiting`/`escalated` record a message answers now (what a signature binds)
    votes: dict[str, list[str]] | None = None  # waiting with a quorum: trigger -> who approved it so far
    quorum: dict[str, int] | None = None  # waiting: the approvals each trigger needs, where more than one
    started_by: str | None = None  # who started the run (`not_starter` forbids them to approve)
    parent: str | None = None  # the run that spawned this one (fan-out)
    children: str | None = None  # a parent waiting for its children: "2/5 finished, 3 live"
    children_escalated: list[str] = field(default_factory=list)  # its live children escalated now: "id: reason"
    queued: list[dict[str, Any]] = field(default_factory=list)  # messages sent, not applied yet: asks, by, since

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_of(run_id: str, state: RunState) -> StatusRow:
    """The status row of a folded run."""
    escalation = state.escalation
    waiting = state.status == RunStatus.WAITING
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
        stands_at=state.stands_at,
        votes={t: list(who) for t, who in state.votes.items()} or None if waiting else None,
        quorum=state.definition["states"].get(state.state, {}).get("quorum") if waiting else None,
        started_by=state.by,
        parent=state.parent,
        children=state.brood.summary() if state.brood is not None and state.brood.state == state.state else None,
    )


def status_rows(home: Home, run_ids: list[str] | None = None, *, now: datetime | None = None,
                folded: dict[str, RunState] | None = None, queued: dict[str, list[Queued]] | None = None,
                answered: dict[str, frozenset[str]] | None = None) -> list[StatusRow]:
    """Rows for `run_ids` (default: every run in the home), in id order, as of `now`
    (default: the clock's now). `folded`, if given, receives each row's RunState (the
    Python API's snapshots add its data to the row, from the same read); `queued`: the
    home's queued messages, if the caller looked already (else looked up here, once);
    `answered`, if given, receives the message keys the journal answered of each run that
    has messages queued (the dashboard filters them out again later, without the journal)."""
    now = now or clock_from_env().now()
    index = queued if queued is not None else queued_index(home)
    code = CodeCheck()
    rows: list[StatusRow] = []
    parents: list[tuple[StatusRow, list[str]]] = []
    for run_id in run_ids if run_ids is not None else home.store.run_ids():
        try:
            chunk = home.store.read(run_id)
            state = fold(chunk.records)
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
        row = row_of(run_id, state)
        if run_id in index:
            row.queued = shown_for(index, run_id, state.inbox_files, now)
            if answered is not None:
                answered[run_id] = frozenset(state.inbox_files)
        if folded is not None:
            folded[run_id] = state
        owes = state.ended and state.todo is not None  # a cancelled run whose on_cancel is owed
        if owes:
            row.owes = "on_cancel"
        if state.status == RunStatus.RUNNING or owes:
            row.held = home.store.held(run_id)
            row.stalled = not row.held and not _moved_on(home, run_id, chunk.cursor)
        _timing(row, state, now)
        if state.code and not state.ended:  # the fingerprints of the definition in force (an upgrade's)
            row.code_changed = code.changed(state.code, Path(state.source).parent if state.source else None)
        rows.append(row)
        if row.children is not None and state.brood is not None:
            parents.append((row, state.brood.live))
    _escalated_children(home, parents, {row.run_id: row for row in rows})
    return rows


def has_status(row: StatusRow, word: str) -> bool:
    """`--status WORD` (and the Python API's `list(status=)`): a run status, or what status
    says beyond it (`stalled`, `overdue`)."""
    if word == "stalled":
        return row.stalled
    if word == "overdue":
        return bool(row.overdue_s)
    return str(row.status) == word
def _escalated_children(home: Home, parents: list[tuple[StatusRow, list[str]]],
                        listed: dict[str, StatusRow]) -> None:
    """Name, on each parent's row, its live children that are escalated (a child not in
    this listing is read from its journal)."""
    for row, live in parents:
        for child in live:
            seen = listed.get(child)
            if seen is None:
                try:
                    seen = row_of(child, fold(home.store.read(child).records))
                except Exception:  # not created yet, or damaged: its own row says so
                    continue
            if seen.status == RunStatus.ESCALATED:
                row.children_escalated.append(f"{child}: {seen.escalation}")


def _moved_on(home: Home, run_id: str, cursor: Cursor) -> bool:
    """Did the journal grow since it was read? (Then a worker had it between the read and
    the probe: it was not stalled.)"""
    try:
        return bool(home.store.read(run_id, after=cursor).records)
    except JournalError:  # replaced or cut since: it was certainly not left alone
        return True


def _timing(row: StatusRow, state: RunState, now: datetime) -> None:
    """How late a wait or a retry is, and which attempt of how many a retry will make."""
    if state.deadline is not None and state.status in (RunStatus.WAITING, RunStatus.RETRYING):
        late = (now - state.deadline).total_seconds()
        row.overdue_s = round(late, 3) if late > 0 else None
    if state.status == RunStatus.RETRYING:
        row.retry_attempt = state.retry_attempt
        retry = state.definition["states"][state.state].get("retry") or {}
        row.retry_attempts = retry.get("attempts")


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
