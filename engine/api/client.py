"""`Ratchet`: the Python API for an application that starts, reads, signals and waits on runs.

It does what the command line does, through the same modules: `start` is `ratchet start`
(it journals the run's pinned definition and runs no step: the supervisor drives it),
`get`/`list` are `ratchet status`'s rows, `history` is the journal, and
`send`/`approve`/`reject`/`resolve`/`cancel` write exactly the inbox files the CLI
writes (engine.supervise.sending), so an application and a person leave the same audit
trail. Nothing here advances a run, except `run_here` (engine.run.concurrent: runs driven
in this process, several at a time, for a batch job without a supervisor): a running
`ratchet supervise` does, whatever wrote the message. Errors are the engine's (`engine.errors`) and the journal's
(`journal.JournalError`).
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import signal
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.api.snapshot import RunSnapshot, snapshot_of
from engine.api.waiting import reached, wait_until
from engine.errors import UnknownRunError
from engine.home import Home
from engine.run.clock import Clock, clock_from_env
from engine.run.concurrent import DEFAULT_THREADS, Driver, Launch
from engine.run.replay import RunState, fold
from engine.run.runner import Runner
from engine.supervise.sending import Sent, compose, send
from engine.supervise.status import has_status, row_of, status_rows
from journal import AnyRecord, check_run_id

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class Ratchet:
    """A client of one Ratchet home (the folder `ratchet --home` names) and its store.

    Example::

        from engine import Ratchet

        ratchet = Ratchet(home="/srv/ratchet/home")
        run_id = ratchet.start("renewal_review", input={"customer": "acme"}, id="renewal-acme")
        ratchet.wait(run_id)                      # until it waits for someone (or ends)
        sent = ratchet.approve(run_id, by="alice", comment="fine by me")
        run = ratchet.wait(run_id, after=sent)    # the supervisor's answer
        print(run.status, run.state, run.data)

    `home` defaults to $RATCHET_HOME, else `.ratchet`; `store` to $RATCHET_STORE, else
    `file:` (journals under the home). `machines_dir` is where a machine given by name is
    looked up (as `./machines` for the CLI). `clock` is for tests (default: the
    engine's clock, $RATCHET_CLOCK_FILE included). One client may be used from several
    threads; each call reads the journals afresh.
    """

    def __init__(self, home: str | Path | None = None, *, store: str | None = None,
                 machines_dir: str | Path = "machines", clock: Clock | None = None) -> None:
        self.home = Home(home or os.environ.get("RATCHET_HOME", ".ratchet"),
                         store=store or os.environ.get("RATCHET_STORE", "file:"))
        self.machines_dir = Path(machines_dir)
        self.clock = clock or clock_from_env()

    def __repr__(self) -> str:
        return f"Ratchet(home={str(self.home.root)!r}, store={self.home.store.location!r})"

    # --- runs -----------------------------------------------------------------------------

    def start(self, machine: str | Path, input: dict[str, Any] | None = None, *, id: str | None = None,
              by: str | None = None) -> str:
        """Create a run of `machine` (a .yaml/.yml/.py path or a name in `machines_dir`) and
        return its id, as `ratchet start` does: the run's pinned definition is journaled and
        no step runs here; a running supervisor picks the run up at once.

        `by`: its starter (a `not_starter` wait refuses them); default, as `ratchet start`: the
        person people.yaml gives this process's Unix user, else that user's name. With a
        people.yaml, `by` must be a name it gives this process's Unix user (StarterError).
        Idempotent on `id`: the same id twice is one run (its input stays the first one);
        RunExistsError if that id is a run of another machine. Creates the home if needed.
        DefinitionError for an invalid machine, InvalidRunIdError for a bad id.
        """
        if id is not None:
            check_run_id(id)
        from engine.trust.people import starter

        runner = Runner(self.home.ensure(), clock=self.clock, machines_dir=self.machines_dir)
        return runner.start(machine, input or {}, run_id=id, by=starter(self.home.root, by))

    def run_here(self, jobs: Iterable[str | Launch], *, threads: int = DEFAULT_THREADS
                 ) -> builtins.list[RunSnapshot | BaseException]:
        """Drive runs in this process, `threads` at a time, until each rests (waits for someone,
        escalates, ends, or sleeps before a retry), with no supervisor: for a batch job, or an
        application that drives its own runs. A job is a run's id (advance it) or a
        `Launch(machine, input, run_id=None, by=None)` (start it and drive it: its first step
        goes to disk with its start, in one fsync). Returns one item per job, in order: the
        run's snapshot, or the exception its job raised (one run's failure never stops the
        others).

        Actions of different runs run at the same time, in threads (as in DBOS and Temporal);
        one run's steps never overlap (jobs naming the same run go one after another). From
        the main thread, SIGINT and SIGTERM stop it gracefully meanwhile: each step in hand
        finishes and is journaled, no next step starts, jobs not begun are returned as
        `engine.run.concurrent.NotDrivenError`; a later call (or a supervisor) goes on.
        A `Launch`'s `by` defaults as `start`'s does. Children a run spawns are created, not
        driven: drive them by id, or run a supervisor.
        """
        from engine.trust.people import starter

        home = self.home.ensure()
        todo = [dataclasses.replace(job, by=starter(home.root, job.by)) if isinstance(job, Launch) else job
                for job in jobs]
        driver = Driver(home, threads=threads, clock=self.clock, machines_dir=self.machines_dir)
        with driver.draining_on(signal.SIGINT, signal.SIGTERM):
            outcomes = driver.drive(todo)
        return [o if isinstance(o, BaseException) else snapshot_of(row_of(o.run_id, o), o) for o in outcomes]

    def get(self, id: str) -> RunSnapshot:
        """Where run `id` stands now (archived runs too); UnknownRunError if there is none.

        A damaged journal gives a snapshot with status "damaged" and `error` set.
        """
        store = self.home.store
        if store.exists(check_run_id(id)):
            folded: dict[str, RunState] = {}
            row = status_rows(self.home, [id], now=self.clock.now(), folded=folded)[0]
            return snapshot_of(row, folded.get(id))
        if id in store.archived_ids():
            state = fold(record for _, record in store.archived_lines(id))
            row = row_of(id, state)
            row.archived = True
            return snapshot_of(row, state)
        raise UnknownRunError(id, store.location)

    def list(self, *, status: str | None = None, machine: str | None = None,
             state: str | None = None) -> builtins.list[RunSnapshot]:
        """The home's runs (not the archived ones), in id order, filtered as `ratchet status`
        filters: `status` is a run status ("waiting", "escalated", ...), "damaged",
        "starting", "stalled" or "overdue"; `machine` and `state` are names."""
        folded: dict[str, RunState] = {}
        rows = status_rows(self.home, now=self.clock.now(), folded=folded)
        return [snapshot_of(row, folded.get(row.run_id)) for row in rows
                if (status is None or has_status(row, status)) and (machine is None or row.machine == machine)
                and (state is None or row.state == state)]

    def history(self, id: str) -> builtins.list[AnyRecord]:
        """Run `id`'s journal: its records in order, as msgspec structs whose class is their
        type (`journal.RunStarted`, `StepSucceeded`, `TriggerReceived`, ...; each has `seq`,
        `ts`, `prev`; `journal.encode(record)` gives its JSON line). Archived runs too;
        UnknownRunError if there is none."""
        store = self.home.store
        if store.exists(check_run_id(id)):
            return list(store.read(id).records)
        if id in store.archived_ids():
            return [record for _, record in store.archived_lines(id)]
        raise UnknownRunError(id, store.location)

    # --- messages: the same inbox files as `ratchet send`, `approve`, ... ----------------

    def send(self, id: str, trigger: str, *, by: str, data: dict[str, Any] | None = None,
             comment: str | None = None, key: Ed25519PrivateKey | None = None) -> Sent:
        """Send `trigger` to run `id` from `by`, as `ratchet send` does: one inbox file,
        applied by the supervisor (or filed in inbox/rejected/ saying why: not waiting
        for it, not an approver). `data` is merged into the run's data.

        Returns where the file went and the run's last seq when it was checked (pass it
        to `wait(after=...)`). On PostgreSQL a signed message, or any in an open home, is a
        row of the messages table instead (`Sent.path` None, `Sent.posted` its key).
        InvalidMessageError for a message that can never apply (a bad field, an ended run,
        a trigger the machine lacks); UnknownRunError.

        `key` (journal.keys.load_private_key) signs the message as `--key` does, for the
        wait the run is in now, valid for a day: with a people.yaml, the supervisor then
        journals the decision as verified by signature ("Who decided" in the README).
        """
        message = compose(run=id, trigger=trigger, by=by, comment=comment, data=data or None)
        return send(self.home, message, key=key)

    def approve(self, id: str, *, by: str, data: dict[str, Any] | None = None, comment: str | None = None,
                key: Ed25519PrivateKey | None = None) -> Sent:
        """`send(id, "approve", ...)`, as `ratchet approve`."""
        return self.send(id, "approve", by=by, data=data, comment=comment, key=key)

    def reject(self, id: str, *, by: str, data: dict[str, Any] | None = None, comment: str | None = None,
               key: Ed25519PrivateKey | None = None) -> Sent:
        """`send(id, "reject", ...)`, as `ratchet reject`."""
        return self.send(id, "reject", by=by, data=data, comment=comment, key=key)

    def resolve(self, id: str, action: Literal["retry", "skip", "abort"], trigger: str | None = None, *,
                by: str, comment: str | None = None, key: Ed25519PrivateKey | None = None) -> Sent:
        """Answer run `id`'s escalation, as `ratchet resolve`: `retry` its state, `skip`
        it by firing `trigger`, or `abort` (cancel) the run. Errors and `key` as `send`."""
        return send(self.home, compose(run=id, resolve=action, trigger=trigger, by=by, comment=comment), key=key)

    def cancel(self, id: str, *, by: str, reason: str | None = None, key: Ed25519PrivateKey | None = None) -> Sent:
        """End run `id` whatever it is doing, as `ratchet cancel` (a step in flight is cut
        off; `on_cancel` runs once). Errors and `key` as `send` (an ended run is refused)."""
        return send(self.home, compose(run=id, cancel=True, by=by, reason=reason), key=key)

    # --- waiting ---------------------------------------------------------------------------

    def wait(self, id: str, until: str | Collection[str] = "settled", *, timeout: float | None = 60.0,
             after: int | Sent | RunSnapshot = 0) -> RunSnapshot:
        """Block until run `id` has a status `until` names, then return its snapshot.

        `until`: a status ("waiting", "escalated", "finished", "cancelled", "running",
        "retrying"), several, "ended" (finished or cancelled) or "settled" (the default:
        waiting for someone, escalated or ended; a parent waiting for its children is not
        settled until its join moves it on). `after`: count only what follows this
        seq (a `Sent` or a snapshot stands for its seq): `wait(id, after=ratchet.approve(id,
        by="alice"))` returns once the supervisor has answered the approval, not at once
        because the run was waiting before it. Sleeps on the store's change hints, never
        spins. WaitTimeoutError (a TimeoutError) after `timeout` seconds (None: forever);
        ValueError for an unknown word in `until`.
        """
        reaches = reached(until)
        seq = after if isinstance(after, int) else after.seq
        words = until if isinstance(until, str) else "|".join(sorted(until))
        wait_until(self.home, check_run_id(id), reaches, until=words,
                   timeout=timeout, after=seq)
        return self.get(id)
