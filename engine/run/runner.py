"""Advance one run from its journal: replay, plan, journal, act — and nothing else.

Each call (`start`, `advance`, `deliver`) holds the run's journal lock, folds the
journal into a `RunState` (engine.run.replay), and repeats: ask `engine.run.plan.plan` what comes
next, journal it, and call the action after a `step_started`. Durability rules:

- `step_started` is fsync'd before the action is called (a crash then leaves an
  in-flight step that replay finds: re-run with the same key, or escalate if the state
  is not idempotent);
- an outcome and everything that follows from it without calling code (transition, the
  next `step_started` or `waiting`) go out as one batch with one fsync, so K task steps
  cost K+1 fsyncs. A crash may leave any prefix of a batch: replay resumes from each.
- `escalated` is durable before its ticket is written and `on_escalate` is called.
"""

from __future__ import annotations

import copy
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from engine.run import tickets
from engine.run.clock import Clock, clock_from_env, iso
from engine.run.context import Fire, StepContext
from engine.errors import ConditionError, ImportPathError, RunExistsError, UnknownRunError
from engine.faults import crash_point
from engine.home import Home
from engine.definition.loader import Machine, load_machine, machine_from_definition
from engine.run.plan import Append, plan
from engine.run.replay import RunState, fold
from engine.run.status import RunStatus
from engine.definition.spec import OK
from journal import (
    Escalated, JournalError, JournalWriter, Record, Resolved, RunStarted, StepFailed,
    StepStarted, StepSucceeded, TriggerReceived, TriggerRefused, check_run_id, read,
)

STATE_CACHE = 1024  # runs whose folded state a process keeps between sessions

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_run_id(now: datetime) -> str:
    """A ULID (26 chars: 48-bit milliseconds + 80 random bits): unique, sorts by start time."""
    value = (int(now.timestamp() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


@dataclass
class Delivery:
    """What became of a trigger or resolution sent to a run."""

    accepted: bool
    reason: str
    state: RunState


@dataclass
class _Session:
    """One locked run: its writer, its folded state, its pinned machine, unflushed records."""

    writer: JournalWriter
    rs: RunState
    machine: Machine
    batch: list[Record] = field(default_factory=list)


class Runner:
    """Drives runs stored under `home`. Safe to use from many processes (one per run at a time)."""

    def __init__(self, home: Home | Path | str, *, clock: Clock | None = None,
                 machines_dir: Path = Path("machines"),
                 on_record: Callable[[Record], None] | None = None,
                 heartbeat: Callable[[], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.home = home if isinstance(home, Home) else Home(home)
        self.clock = clock or clock_from_env()
        self.machines_dir = Path(machines_dir)
        self.on_record = on_record
        self.heartbeat = heartbeat
        self.rng = rng or random.Random()
        self._machines: dict[tuple[str, str | None], Machine] = {}
        self._states: dict[str, tuple[int, int, str, RunState]] = {}  # see _replay

    # --- public API -----------------------------------------------------------------------

    def start(self, machine_ref: str | Path, input: dict[str, Any] | None = None,
              run_id: str | None = None, by: str | None = None) -> str:
        """Create a run (journal its pinned definition) and return its id.

        Idempotent on `run_id`: starting an existing run of the same machine returns it.
        """
        return self._create(machine_ref, input, run_id, by, drive=False)[0]

    def launch(self, machine_ref: str | Path, input: dict[str, Any] | None = None,
               run_id: str | None = None, by: str | None = None) -> RunState:
        """`start` then `advance` under one lock: the first step's `step_started` goes to
        disk in the same fsync as `run_started`. An existing `run_id` is just advanced."""
        run_id, rs = self._create(machine_ref, input, run_id, by, drive=True)
        return rs if rs is not None else self.advance(run_id)

    def _create(self, machine_ref: str | Path, input: dict[str, Any] | None, run_id: str | None,
                by: str | None, *, drive: bool) -> tuple[str, RunState | None]:
        machine = load_machine(machine_ref, self.machines_dir)
        run_id = check_run_id(run_id) if run_id else new_run_id(self.clock.now())
        with self._writer(run_id, create=True) as writer:
            if writer.last_seq:  # it exists (or a crash left only a torn first line, cut on open)
                first = self.home.store.read(run_id).records[0]
                if first.machine != machine.name:
                    raise RunExistsError(run_id, first.machine, machine.name)
                return run_id, None
            source = str(Path(machine.source).resolve()) if machine.source else None
            record = RunStarted(run_id=run_id, machine=machine.name, version=machine.spec.version,
                                definition=machine.definition, definition_hash=machine.hash,
                                input=dict(input or {}), source=source, by=by, ts=iso(self.clock.now()))
            session = _Session(writer, fold([]), machine)
            self._journal(session, [record])
            if not drive:
                self._flush(session)
                return run_id, None
            return run_id, self._drive(session)

    def advance(self, run_id: str, *, abandoned: str | None = None,
                abandoned_seq: int | None = None) -> RunState:
        """Drive the run until it waits, ends, escalates or must sleep before a retry.

        `abandoned` says why an in-flight step has no outcome: "worker died" (default:
        re-run with the same key, or escalate a non-idempotent step) or "timeout" (the
        supervisor killed a step past its limit: a failed attempt). `abandoned_seq`, the
        seq of the `step_started` that reason is about, guards against applying it to a
        later step.
        """
        with self._session(run_id) as s:
            step = s.rs.in_flight
            if abandoned_seq is not None and (step is None or step.seq != abandoned_seq):
                # Someone else moved the run on since the caller looked: the reason given
                # is about another step, so it says nothing about the one in flight now.
                abandoned = None
            return self._drive(s, abandoned)

    def run(self, run_id: str, rs: RunState | None = None) -> RunState:
        """`advance`, sleeping (on the clock) through retry waits: for `ratchet run`.

        `rs`: the state a `launch` just returned, to go on from without advancing first.
        """
        while True:
            rs = rs or self.advance(run_id)
            if rs.status != RunStatus.RETRYING:
                return rs
            self.clock.sleep((rs.deadline - self.clock.now()).total_seconds())
            rs = None

    def deliver(self, run_id: str, message: Any, source_file: str | None = None,
                answers: int | None = None) -> Delivery:
        """Check, journal and apply a trigger or resolution from outside, then advance.

        Idempotent on `source_file`: a file already journaled gets its earlier answer.
        `answers`: what the run stood at (RunState.stands_at) when the message arrived; if
        the run has moved on since (even back to the same state), the message is stale.
        """
        with self._session(run_id) as s:
            if source_file and source_file in s.rs.inbox_files:
                accepted, reason = s.rs.inbox_files[source_file]
                return Delivery(accepted, reason, s.rs)
            if s.rs.status == RunStatus.WAITING and s.rs.deadline and self.clock.now() >= s.rs.deadline:
                self._drive(s)  # the deadline passed first: the timeout wins over the message
            reason = _staleness(s.rs, answers) or _refusal(s.rs, s.machine, message)
            if reason:
                self._journal(s, [TriggerRefused(
                    trigger=_label(message), state=s.rs.state, by=message.by, reason=reason,
                    source_file=source_file)])
                self._flush(s)
                return Delivery(False, reason, s.rs)
            if message.resolve:
                self._resolve(s, message, source_file)
            else:
                self._journal(s, [TriggerReceived(
                    trigger=message.trigger, state=s.rs.state, by=message.by, source_file=source_file,
                    comment=message.comment, data=dict(message.data or {}))])
            return Delivery(True, "accepted", self._drive(s))

    def read(self, run_id: str) -> RunState:
        """The run's current state, folded from its journal (no lock taken, nothing run)."""
        if not self.home.store.exists(run_id):
            raise UnknownRunError(run_id, str(self.home.runs))
        return fold(self.home.store.read(run_id).records)

    # --- driving ----------------------------------------------------------------------------

    def _drive(self, s: _Session, abandoned: str | None = None) -> RunState:
        rs, machine = s.rs, s.machine
        while True:
            now = self.clock.now()
            move = plan(rs, machine, now, abandoned=abandoned, rng=self.rng)
            abandoned = None  # it describes only the in-flight step found on opening
            if not isinstance(move, Append):  # Stop or Sleep: nothing more to do now
                self._flush(s)
                return rs
            for record in move.records:
                record.ts = iso(now)
                if isinstance(record, Escalated):
                    record.ticket = str(tickets.ticket_path(self.home.escalations, rs.run_id))
            self._journal(s, move.records)
            last = move.records[-1]
            if isinstance(last, Escalated):
                self._flush(s)
                tickets.open_ticket(self.home.escalations, rs, last, machine)
            elif isinstance(last, StepStarted):
                self._flush(s)  # durable before the action is called
                self._journal(s, [self._call(rs, machine, last)])

    def _call(self, rs: RunState, machine: Machine, started: StepStarted) -> Record:
        """Call the action of the step just started; its outcome record (not yet journaled)."""
        spec = machine.state(started.state)
        ctx = StepContext(run_id=rs.run_id, machine=rs.machine, state=started.state,
                          attempt=started.attempt, idempotency_key=started.idempotency_key,
                          input=copy.deepcopy(rs.input), data=copy.deepcopy(rs.data),
                          _heartbeat=self.heartbeat)
        crash_point("before_action")
        began = time.perf_counter()
        try:
            result = machine.resolve(spec.action)(ctx)
        except Exception as exc:
            crash_point("after_action")
            retryable = not isinstance(exc, ImportPathError) and machine.retryable(started.state, exc)
            return StepFailed(state=started.state, attempt=started.attempt, error=str(exc) or repr(exc),
                              error_type=type(exc).__name__, retryable=retryable,
                              duration_ms=_ms(began), ts=iso(self.clock.now()))
        crash_point("after_action")
        return _outcome(started, result, _ms(began), iso(self.clock.now()))

    def _resolve(self, s: _Session, message: Any, source_file: str | None) -> None:
        self._journal(s, [Resolved(action=message.resolve, by=message.by,
                                   trigger=message.trigger if message.resolve == "skip" else None,
                                   comment=message.comment, source_file=source_file,
                                   ts=iso(self.clock.now()))])
        self._flush(s)  # durable before the ticket goes
        tickets.remove_ticket(tickets.ticket_path(self.home.escalations, s.rs.run_id))

    def _journal(self, s: _Session, records: list[Record]) -> None:
        """Queue records for the next flush and fold them into the live state now."""
        for record in records:
            if not record.ts:
                record.ts = iso(self.clock.now())
            s.rs.apply(record)
        s.batch.extend(records)

    def _flush(self, s: _Session) -> None:
        if not s.batch:
            return
        batch, s.batch = s.batch, []
        s.writer.append_many(batch)  # one write, one fsync
        crash_point("after_append")
        s.rs.last_seq = s.writer.last_seq
        self._notify_records(batch)

    def _notify_records(self, records: list[Record]) -> None:
        if self.on_record is not None:
            for record in records:
                self.on_record(record)

    # --- opening runs -----------------------------------------------------------------------

    @contextmanager
    def _writer(self, run_id: str, *, create: bool = False) -> Iterator[JournalWriter]:
        writer = self.home.store.writer(run_id, create=create)  # JournalLockedError: another process has it
        with writer:
            yield writer

    @contextmanager
    def _session(self, run_id: str) -> Iterator[_Session]:
        if not self.home.store.exists(run_id):
            raise UnknownRunError(run_id, str(self.home.runs))
        with self._writer(run_id) as writer:
            rs = self._replay(run_id, writer)
            if not rs.run_id:  # created, but the crash came before run_started was durable
                raise UnknownRunError(run_id, str(self.home.store.path(run_id)))
            s = _Session(writer, rs, self._machine(rs))
            if rs.status == "escalated":  # a crash may have come before its ticket was written
                tickets.open_ticket(self.home.escalations, rs, rs.escalation, s.machine)
            elif rs.escalations:  # ...or after its resolution, before the ticket was removed
                tickets.remove_ticket(tickets.ticket_path(self.home.escalations, run_id))
            yield s
            if not s.batch and s.writer.last_seq == rs.last_seq:  # all of it is on disk
                self._remember(run_id, writer, rs)

    def _replay(self, run_id: str, writer: JournalWriter) -> RunState:
        """The run's state from its journal: folded in full once per process, then only
        from the lines added since this process last held the run (so a long run does
        not cost a full replay per event). Any doubt about the file means a full fold."""
        seen = self._states.pop(run_id, None)
        if seen is not None:
            inode, end, last_hash, rs = seen
            if inode == os.fstat(writer.fileno()).st_ino and end <= writer.size:
                if end == writer.size and last_hash == writer.last_hash:
                    return rs
                try:  # raises if the new lines do not continue the chain read before
                    grown = read(writer.path, offset=end, last_seq=rs.last_seq, last_hash=last_hash)
                except JournalError:
                    grown = None
                if grown and grown.end_offset == writer.size and grown.last_hash == writer.last_hash:
                    for record in grown.records:
                        rs.apply(record)
                    return rs
        return fold(self.home.store.read(run_id).records)

    def _remember(self, run_id: str, writer: JournalWriter, rs: RunState) -> None:
        if len(self._states) >= STATE_CACHE:
            self._states.pop(next(iter(self._states)))  # the run held longest ago
        self._states[run_id] = (os.fstat(writer.fileno()).st_ino, writer.size, writer.last_hash, rs)

    def _machine(self, rs: RunState) -> Machine:
        """The run's pinned definition (never the file as it is now), built once per process."""
        key = (rs.definition_hash, rs.source)
        if key not in self._machines:
            base_dir = Path(rs.source).parent if rs.source else None
            self._machines[key] = machine_from_definition(rs.definition, base_dir)
        return self._machines[key]


def _refusal(rs: RunState, machine: Machine, message: Any) -> str | None:
    """Why `message` cannot be applied to the run now (None: it can)."""
    try:
        return _refusal_of(rs, machine, message)
    except ConditionError as exc:
        return str(exc)


def _refusal_of(rs: RunState, machine: Machine, message: Any) -> str | None:
    if message.resolve:
        if rs.status != RunStatus.ESCALATED:
            return f"run is not escalated (it is {rs.status} in '{rs.state}'); nothing to resolve"
        if message.resolve == "skip" and machine.next_state(rs.state, message.trigger, rs.data) is None:
            return (f"'{rs.state}' has no transition for '{message.trigger}' "
                    f"(or its conditions are not met); skip with one of: {'|'.join(machine.triggers_from(rs.state))}")
        return None
    if rs.status != RunStatus.WAITING:
        return f"run is {rs.status} in '{rs.state}', not waiting for a trigger"
    if message.trigger not in rs.triggers:
        return (f"'{message.trigger}' is not a trigger of state '{rs.state}' "
                f"(it waits for {'|'.join(rs.triggers) or 'nothing'})")
    if rs.approvers and message.by not in rs.approvers:
        return f"'{message.by}' is not an approver of '{rs.state}' (approvers: {', '.join(rs.approvers)})"
    if machine.next_state(rs.state, message.trigger, {**rs.data, **(message.data or {})}) is None:
        return "conditions not met"
    return None


def _staleness(rs: RunState, answers: int | None) -> str | None:
    if answers is None or rs.stands_at == answers:
        return None
    then = f"waited on record #{answers}" if answers else "was not waiting for anything"
    now = f"waits on record #{rs.stands_at}" if rs.stands_at else f"is {rs.status}"
    return (f"stale: when this file arrived the run {then}; it has moved on and now {now} "
            f"in '{rs.state}'; send it again if it still applies")


def _label(message: Any) -> str:
    return f"resolve:{message.resolve}" if message.resolve else message.trigger


def _outcome(started: StepStarted, result: Any, ms: float, ts: str) -> Record:
    """The record for what an action returned (None, a trigger, a dict of data, or Fire)."""
    if result is None:
        trigger, data = OK, {}
    elif isinstance(result, str):
        trigger, data = result, {}
    elif isinstance(result, dict):
        trigger, data = OK, result
    elif isinstance(result, Fire):
        trigger, data = result.trigger, result.data or {}
    else:
        return _bad_result(started, f"returned a {type(result).__name__}; expected None, str, dict or Fire", ms, ts)
    try:
        # Round-trip through JSON so the live state equals what replay will read back.
        data = msgspec.json.decode(msgspec.json.encode(data))
    except (TypeError, msgspec.EncodeError) as exc:
        return _bad_result(started, f"returned data that is not JSON: {exc}", ms, ts)
    return StepSucceeded(state=started.state, attempt=started.attempt, trigger=trigger, data=data,
                         duration_ms=ms, ts=ts)


def _bad_result(started: StepStarted, error: str, ms: float, ts: str) -> StepFailed:
    # A wrong return type is a bug in the action: retrying would give the same answer.
    return StepFailed(state=started.state, attempt=started.attempt, error=error,
                      error_type="TypeError", retryable=False, duration_ms=ms, ts=ts)


def _ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 3)
