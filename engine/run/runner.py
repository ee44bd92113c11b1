"""Advance one run from its journal: replay, plan, journal, act — and nothing else.

Each call (`start`, `advance`, `deliver`) holds the run's journal lock, folds the
journal into a `RunState` (engine.run.replay), and repeats: ask `engine.run.plan.plan` what comes
next, journal it, and call the action after a `step_started` (engine.run.outcome). Whether
a message from outside applies is engine.run.delivery's to say. Durability rules:

- `step_started` is fsync'd before the action is called (a crash then leaves an
  in-flight step that replay finds: re-run with the same key, or escalate if the state
  is not idempotent);
- an outcome and everything that follows from it without calling code (transition, the
  next `step_started` or `waiting`) go out as one batch with one fsync, so K task steps
  cost K+1 fsyncs. A crash may leave any prefix of a batch: replay resumes from each.
- `escalated` is durable before its ticket is written and `on_escalate` is called;
  `cancelled` before a ticket is removed, and `compensation_started` before `on_cancel`
  is called (engine.run.compensation).
- a batch that leaves the run at rest (waiting, retrying, escalated, ended) ends in a
  `sealed` record, a signed checkpoint of the chain (engine.run.sealing): in the same
  write and fsync, then kept outside the journal as the store's side file.
- after `drain()` (a graceful stop) a batch never ends in the next `step_started`:
  replay resumes at the state's entry (its todo), so the next start begins that step.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.definition.machine import Machine
from engine.errors import DefinitionError, ReplayError, RunExistsError, UnknownRunError
from engine.faults import crash_point
from engine.home import Home
from engine.run import authority, delivery, stale_code, tickets, upgrade
from engine.run import children as fanout
from engine.run.cache import RunCache
from engine.run.clock import Clock, clock_from_env, iso
from engine.run.compensation import ABANDONED, compensate, notify_failure
from engine.run.delivery import Delivery, Request
from engine.run.ids import new_run_id
from engine.run.outcome import call_step
from engine.run.plan import Append, escalation, plan
from engine.run.replay import RunState, fold
from engine.run.sealing import Sealer
from engine.run.spawn import SPAWN_FAILED
from engine.run.status import RunStatus
from engine.run.todo import CreateChildren, Enter
from engine.trust.sender import Sender
from journal import (
    CompensationFinished,
    CompensationStarted,
    Escalated,
    Record,
    Resolved,
    RunStarted,
    StepStarted,
    TriggerReceived,
    TriggerRefused,
    TriggerVoted,
    Writer,
    check_run_id,
)
from journal.errors import InvalidRunIdError, JournalLockedError
from journal.records import ChildRun, Spawned

log = logging.getLogger(__name__)

# Records after which the runner calls code (an action, on_cancel, on_escalate) or
# creates child runs (loading their machines: imports, a journal each): a journal-only
# delivery stops before the move that ends in one.
_CALLS_CODE = (StepStarted, CompensationStarted, Escalated, Spawned)


@dataclass
class _Session:
    """One locked run: its writer, its folded state, its pinned machine, unflushed records."""

    writer: Writer
    rs: RunState
    machine: Machine
    batch: list[Record] = field(default_factory=list)
    journal_only: bool = False  # a delivery on the mail lane: journal, call no code (see deliver)


class Runner:
    """Drives runs stored under `home`. Safe to use from many processes (one per run at a time)."""

    def __init__(self, home: Home | Path | str, *, clock: Clock | None = None,
                 machines_dir: Path = Path("machines"),
                 on_record: Callable[[Record], None] | None = None,
                 heartbeat: Callable[[], None] | None = None,
                 rng: random.Random | None = None, sealing: bool = True) -> None:
        self.home = home if isinstance(home, Home) else Home(home)
        self.sealer = Sealer(self.home, enabled=sealing)  # sealing=False: benchmarks only
        self.clock = clock or clock_from_env()
        self.machines_dir = Path(machines_dir)
        self.on_record = on_record
        self.heartbeat = heartbeat
        self.rng = rng or random.Random()
        self.cache = RunCache(self.home.store)
        self._draining = False  # see drain()

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
                by: str | None, *, drive: bool, parent: str | None = None,
                parent_state: str | None = None) -> tuple[str, RunState | None]:
        from engine.definition.loader import load_machine  # validating a new run's definition: pydantic

        machine = load_machine(machine_ref, self.machines_dir)
        run_id = check_run_id(run_id) if run_id else new_run_id(self.clock.now())
        with self._writer(run_id, create=True) as writer:
            if writer.last_seq:  # it exists (or a crash left only a torn first line, cut on open)
                first = self.home.store.read(run_id).records[0]
                if not isinstance(first, RunStarted):  # damage: verify names the line
                    raise ReplayError(run_id, first, ValueError("a run's first record must be run_started"))
                if first.machine != machine.name:
                    raise RunExistsError(run_id, first.machine, machine.name)
                return run_id, None
            source = machine.resolved_source
            record = RunStarted(run_id=run_id, machine=machine.name, version=machine.version,
                                definition=machine.pinned, definition_hash=machine.hash,
                                input=dict(input or {}), source=source, by=by, ts=iso(self.clock.now()),
                                code=machine.code, parent=parent, parent_state=parent_state)
            session = _Session(writer, fold([]), machine)
            self._journal(session, [record])
            if not drive:
                self._flush(session)
                return run_id, None
            rs = self._drive(session)
            self._keep_timer(session, rested=False)
            return run_id, rs

    def advance(self, run_id: str, *, abandoned: str | None = None,
                abandoned_seq: int | None = None, children: list[str] | tuple[str, ...] | None = None) -> RunState:
        """Drive the run until it waits, ends, escalates or must sleep before a retry.

        `abandoned` says why an in-flight step has no outcome: "worker died" (default:
        re-run with the same key, or escalate a non-idempotent step) or "timeout" (the
        supervisor killed a step past its limit: a failed attempt). `abandoned_seq`, the
        seq of the `step_started` that reason is about, guards against applying it to a
        later step. `children`: of a parent waiting for its children, the ones known to
        have ended (None: look at every live one), whose ends are journaled first.
        """
        with self._session(run_id) as s:
            ended = fanout.ends(self.home.store, s.rs, children and list(children))
            if ended:
                self._journal(s, list(ended))
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
            if rs.status != RunStatus.RETRYING or rs.deadline is None:
                return rs
            self.clock.sleep((rs.deadline - self.clock.now()).total_seconds())
            rs = None

    def deliver(self, run_id: str, message: Request, source_file: str | None = None,
                answers: int | None = None, sender: Sender | None = None, *,
                journal_only: bool = False) -> Delivery:
        """Check, journal and apply a message from outside (a trigger, a resolution, a
        cancel or an upgrade), then advance.

        Idempotent on `source_file`: a file already journaled gets its earlier answer.
        `answers`: what the run stood at (RunState.stands_at) when the message arrived; if
        the run has moved on since (even back to the same state), the message is stale.
        `sender`: who sent it, as the supervisor proved it (engine.trust.sender); None for
        trusted in-process callers. Each decision record says whether it was verified.
        `journal_only` (the supervisor's mail lane, engine.supervise.lane): journal the
        message's records and whatever follows without calling code, and stop before a
        `step_started`, `compensation_started` or `escalated` (whose ticket calls
        on_escalate), or a spawn (`spawned`, creating children: their machines are loaded):
        the run then owes that move (its todo), and an ordinary `advance` makes it, exactly
        as after a crash between the two batches.
        """
        who = delivery.provenance(sender)
        with self._session(run_id) as s:
            s.journal_only = journal_only
            if source_file and source_file in s.rs.inbox_files:
                accepted, reason = s.rs.inbox_files[source_file]
                return Delivery(accepted, reason, s.rs)
            if (not message.cancel and s.rs.status == RunStatus.WAITING and s.rs.deadline
                    and self.clock.now() >= s.rs.deadline):
                # The deadline passed first: the timeout wins over the message (not over a
                # cancel, which ends the run as it stands: nothing runs on its way out).
                self._drive(s)
            refused, new = delivery.check(s.rs, s.machine, message, answers, self.clock.now(), sender)
            if refused:
                self._journal(s, [TriggerRefused(
                    trigger=delivery.label(message), state=s.rs.state, by=message.by, reason=refused,
                    source_file=source_file, **who)])
                self._flush(s)
                return Delivery(False, refused, s.rs)
            if message.cancel:
                escalated = s.rs.status == RunStatus.ESCALATED
                self._journal(s, [delivery.cancellation(s.rs, s.machine, message, source_file, sender)])
                self._flush(s)  # durable before its ticket goes and on_cancel is called
                if escalated:
                    tickets.remove_ticket(self.home.store, run_id)
            elif new is not None and message.upgrade is not None:
                moved = upgrade.upgraded(s.rs, new, message.upgrade, message.by, message.comment, source_file)
                moved.verified, moved.via, moved.signature = who["verified"], who.get("via"), who.get("signature")
                self._journal(s, [moved])
                s.machine = self.cache.pin(new, s.rs.source)  # from here on
            elif message.resolve is not None:
                self._resolve(s, message.resolve, message, source_file, who)
            elif message.trigger is not None:  # always: a trigger message without one is refused
                self._journal(s, [self._approval(s.rs, s.machine, message, source_file, who)])
                if isinstance(s.batch[-1], TriggerVoted):  # counted toward a quorum: still waiting
                    self._flush(s)
                    return Delivery(True, "accepted", s.rs)
            return Delivery(True, "accepted", self._drive(s))

    @staticmethod
    def _approval(rs: RunState, machine: Machine, message: Request, source_file: str | None,
                  who: dict[str, Any]) -> TriggerReceived | TriggerVoted:
        """The record of an accepted trigger: it fires (`trigger_received`), or it is one
        more approval toward the state's quorum for it (`trigger_voted`)."""
        trigger = message.trigger or ""
        needed = authority.quorum_of(machine, rs.state, trigger)
        votes = [*rs.votes.get(trigger, []), message.by]
        fields = dict(trigger=trigger, state=rs.state, by=message.by, source_file=source_file,
                      comment=message.comment, data=dict(message.data or {}), **who)
        if len(votes) < needed:
            return TriggerVoted(count=len(votes), needed=needed, **fields)
        return TriggerReceived(votes=votes if needed > 1 else [], **fields)

    def drain(self) -> None:
        """Start no step from now on (for good): the one in hand finishes, its outcome and
        transition are journaled, then calls return. Safe from a signal handler or thread."""
        self._draining = True

    def read(self, run_id: str) -> RunState:
        """The run's current state, folded from its journal (no lock taken, nothing run)."""
        if not self.home.store.exists(run_id):
            raise UnknownRunError(run_id, self.home.store.location)
        return fold(self.home.store.read(run_id).records)

    # --- driving ----------------------------------------------------------------------------

    def _drive(self, s: _Session, abandoned: str | None = None) -> RunState:
        rs, machine = s.rs, s.machine
        while True:
            if (isinstance(rs.todo, (CreateChildren, Enter)) and rs.brood is not None
                    and rs.brood.state == rs.state):
                if s.journal_only:
                    self._flush(s)
                    return rs  # creating children is the pool's (as a step is): the run owes it
                if not self._create_children(s):
                    return rs  # escalated: the children could not be created
            now = self.clock.now()
            move = plan(rs, machine, now, abandoned=abandoned, rng=self.rng)
            abandoned = None  # it describes only the in-flight step found on opening
            if (not isinstance(move, Append) or (self._draining and isinstance(move.records[-1], StepStarted))
                    or (s.journal_only and isinstance(move.records[-1], _CALLS_CODE))):
                self._flush(s)  # Stop or Sleep: nothing more to do now; or a stop was asked; or code is next
                return rs
            for record in move.records:
                record.ts = iso(now)
                if isinstance(record, Escalated):
                    record.ticket = tickets.locate_ticket(self.home.store, rs.run_id)
            self._journal(s, move.records)
            last = move.records[-1]
            if isinstance(last, Escalated):
                self._flush(s)
                tickets.open_ticket(self.home.store, rs, last, machine)
            elif isinstance(last, StepStarted):
                self._flush(s)  # durable before the action is called
                self._journal(s, [call_step(rs, machine, last, self.clock, self.heartbeat)])
            elif isinstance(last, CompensationStarted):
                self._flush(s)  # durable before on_cancel is called
                self._journal(s, [compensate(rs, machine, last, self.clock, self.heartbeat)])
            elif isinstance(last, CompensationFinished) and last.error_type == ABANDONED:
                self._flush(s)  # given up after repeated cut-offs: a person must hear of it
                log.warning("run %s: on_cancel %s given up: %s", rs.run_id, last.action, last.error)
                notify_failure(rs, machine, last.action, last.seq, f"{ABANDONED}: {last.error}")

    def _create_children(self, s: _Session) -> bool:
        """Create the children a `spawned` record listed (after it is durable), or, on a
        human's retry of the state, the live ones a crash or an error left uncreated.
        False if they cannot be: the run is escalated, saying why."""
        rs = s.rs
        brood = rs.brood
        todo = rs.todo
        listed = todo.children if isinstance(todo, CreateChildren) else None
        self._flush(s)  # the `spawned` record is on disk before any child exists
        if listed is None and brood is not None:
            listed = [ChildRun(run_id=c, key=k, machine="", input={}) for c, k in brood.started.items()
                      if c not in brood.ended]
            listed = [c for c in listed if not self.home.store.exists(c.run_id)]
            if listed:  # their input and machine are in the `spawned` records: read them back
                wanted = {c.run_id for c in listed}
                listed = [child for record in self.home.store.read(rs.run_id).records
                          if isinstance(record, Spawned) for child in record.children if child.run_id in wanted]
        try:
            # A child is started on behalf of its parent's starter: a `not_starter` wait in it
            # must refuse that person too (four eyes across a fan-out).
            fanout.create(self.home.store, rs, listed or [], self.machines_dir,
                          functools.partial(self._make_child, by=rs.by))
        except (DefinitionError, RunExistsError, InvalidRunIdError) as exc:
            record = escalation(rs, SPAWN_FAILED, f"creating the children of '{rs.state}' failed: {exc}; "
                                                  "fix it, then resolve with retry")
            record.ts = iso(self.clock.now())
            record.ticket = tickets.locate_ticket(self.home.store, rs.run_id)
            self._journal(s, [record])
            self._flush(s)
            tickets.open_ticket(self.home.store, rs, record, s.machine)
            return False
        return True

    def _make_child(self, machine: Path, input: dict[str, Any], run_id: str, parent: str, state: str, *,
                    by: str | None = None) -> None:
        shown, self.on_record = self.on_record, None  # a child's records are its own journal's story
        try:
            self._create(machine, input, run_id, by, drive=False, parent=parent, parent_state=state)
        except JournalLockedError:
            return  # another process holds it: it exists, and is being created or driven
        finally:
            self.on_record = shown

    def _resolve(self, s: _Session, action: str, message: Request, source_file: str | None,
                 who: dict[str, Any]) -> None:
        self._journal(s, [Resolved(action=action, by=message.by,
                                   trigger=message.trigger if action == "skip" else None,
                                   comment=message.comment, source_file=source_file,
                                   ts=iso(self.clock.now()), **who)])
        self._flush(s)  # durable before the ticket goes
        tickets.remove_ticket(self.home.store, s.rs.run_id)

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
        seal = self.sealer.seal(s.rs, batch, s.writer, iso(self.clock.now()))
        if seal is not None:  # the run is at rest now: seal what it did, in the same write
            s.rs.apply(seal)
            batch.append(seal)
        kept = self._append(s.writer, batch, seal is not None)  # one write, one fsync
        crash_point("after_append")
        s.rs.last_seq = s.writer.last_seq
        if seal is not None:
            self.sealer.sealed(s.rs.run_id, seal, kept=kept)
        self._notify_records(batch)

    @staticmethod
    def _append(writer: Writer, batch: list[Record], sealed: bool) -> bool:
        """Append `batch`; True if the writer also kept its seal as the side file, in the same
        transaction (PostgreSQL's `append_sealed`): the sealer then has nothing left to write."""
        keep = getattr(writer, "append_sealed", None) if sealed else None
        if keep is None:
            writer.append_many(batch)
            return False
        keep(batch)
        return True

    def _seal_owed(self, s: _Session) -> None:
        """Finish the sealing a crash cut short (a torn seal, a side file not yet written),
        or seal a resting run whose journal predates sealing."""
        if self.sealer.owed(s.rs):
            seal = self.sealer.seal(s.rs, [], s.writer, iso(self.clock.now()))
            if seal is not None:
                s.rs.apply(seal)
                kept = self._append(s.writer, [seal], True)
                s.rs.last_seq = s.writer.last_seq
                self.sealer.sealed(s.rs.run_id, seal, kept=kept)
                self._notify_records([seal])
        self.sealer.repair_side(s.rs)

    def _notify_records(self, records: list[Record]) -> None:
        if self.on_record is not None:
            for record in records:
                self.on_record(record)

    # --- opening runs -----------------------------------------------------------------------

    @contextmanager
    def _writer(self, run_id: str, *, create: bool = False) -> Iterator[Writer]:
        self.sealer.prepare()  # the home's key, loaded before the lock is taken
        writer = self.home.store.writer(run_id, create=create)  # JournalLockedError: another process has it
        try:
            with writer:
                yield writer
        finally:
            self.sealer.publish()  # the side files of its seals, the lock released

    @contextmanager
    def _session(self, run_id: str) -> Iterator[_Session]:
        store = self.home.store
        if not store.exists(run_id):
            raise UnknownRunError(run_id, store.location)
        with self._writer(run_id) as writer:
            rs = self.cache.state(run_id, writer)
            if not rs.run_id:  # created, but the crash came before run_started was durable
                raise UnknownRunError(run_id, store.where(run_id))
            s = _Session(writer, rs, self.cache.machine(rs))
            rested = _rests_until(rs) is not None  # a shared store may hold a timer for it (journal.timers)
            # A crash may have come between `escalated` and its ticket...
            if rs.status == RunStatus.ESCALATED and rs.escalation is not None:
                tickets.open_ticket(store, rs, rs.escalation, s.machine)
            elif rs.escalations:  # ...or after its resolution, before the ticket was removed
                tickets.remove_ticket(store, run_id)
            self._seal_owed(s)
            yield s
            self._escalate_stale_wait(s)
            self._keep_timer(s, rested)
            if not s.batch and s.writer.last_seq == rs.last_seq:  # all of it is on disk
                self.cache.remember(run_id, writer, rs)

    def _keep_timer(self, s: _Session, rested: bool) -> None:
        """On a store that supervisors share, keep the run's timer as the journal now says: its
        deadline if it rests with one (this also ends the claim that sent us), else none. After the
        append, never before: a crash in between leaves a stale timer or none, which the
        supervisors repair from the journal (engine.supervise.claims)."""
        timers = self.home.store.timers
        if timers is None:
            return
        due = _rests_until(s.rs)
        if due is not None:
            timers.set(s.rs.run_id, due, s.rs.last_seq)
        elif rested:  # a run that never rested with a deadline has no timer: no round trip for it
            timers.clear(s.rs.run_id, s.rs.last_seq)

    def _escalate_stale_wait(self, s: _Session) -> None:
        """A session that leaves the run waiting on conditions that no longer import
        escalates it now (engine.run.stale_code): it would otherwise refuse every answer."""
        record = stale_code.stale_wait(s.rs, s.machine)
        if record is None:
            return
        record.ticket = tickets.locate_ticket(self.home.store, s.rs.run_id)
        self._journal(s, [record])
        self._flush(s)
        tickets.open_ticket(self.home.store, s.rs, record, s.machine)


def _rests_until(rs: RunState) -> datetime | None:
    """The deadline of a run at rest with one (a wait's timeout, a retry's back-off), else None."""
    if rs.status in (RunStatus.WAITING, RunStatus.RETRYING):
        return rs.deadline
    return None
