"""Commands that create and drive runs: `ratchet start` and `ratchet run`.

`start` only journals a run's pinned definition (the supervisor, or `run`, drives it).
`run` drives a run in this process, printing each record as it becomes durable, until
the run waits for someone, ends or escalates; it sleeps through retry back-offs.
Both are idempotent on `--id`: `ratchet run M --id X` after a crash continues run X.
Ctrl-C in `run` is a graceful stop (`CtrlC`): the step in flight finishes, no other starts.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import click

from engine.cli.app import home_of, main
from engine.cli.options import MACHINES_DIR, parse_inputs
from engine.cli.timeline import timeline_line, traceback_lines, when
from engine.run.status import RunStatus

if TYPE_CHECKING:  # the runner stack is imported lazily: `ratchet --help` stays fast
    from engine.run.clock import Clock
    from engine.run.replay import RunState
    from engine.run.runner import Runner
    from journal import AnyRecord, Record

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def _runner(ctx: click.Context, machine: str, run_id: str | None, *,
            on_record: Callable[[Record], None] | None = None, clock: Clock | None = None) -> Runner:
    """A runner on the home, created only once the run can be written: a command that fails
    first (an unknown machine, a bad definition or id) leaves no empty home behind."""
    from engine.definition.loader import load_machine  # lazy: keeps `ratchet --help` fast
    from engine.home import Home
    from engine.run.runner import Runner
    from journal import check_run_id

    load_machine(machine, MACHINES_DIR)  # loaded once: the runner's load hits the loader's cache
    if run_id is not None:
        check_run_id(run_id)
    return Runner(Home(home_of(ctx)).ensure(), machines_dir=MACHINES_DIR, on_record=on_record, clock=clock)


def _starter(runner: Runner, claimed: str | None) -> str:
    from engine.trust.people import starter

    return starter(runner.home.root, claimed)  # a --by the people file does not give this user: refused


_input = click.option("--input", "inputs", multiple=True, metavar="KEY=VALUE",
                      help="Run input (repeatable); VALUE is read as JSON if it is valid JSON.")
_id = click.option("--id", "run_id", metavar="ID", help="The run's id (default: a new ULID). Same id twice: one run.")
_by = click.option("--by", metavar="NAME", help="Who starts the run (kept in the journal; default: your Unix "
                   "user, or the person people.yaml gives it). A `not_starter` wait refuses their approval.")


@main.command()
@click.argument("machine", metavar="MACHINE")
@_input
@_id
@_by
@click.pass_context
def start(ctx: click.Context, machine: str, inputs: tuple[str, ...], run_id: str | None, by: str | None) -> None:
    """Create a run of MACHINE and print its id.

    It runs no step. MACHINE is a .yaml/.yml/.py path or a name in ./machines. The supervisor (or
    `ratchet run --id ID`) drives the run.

    \b
    Example:
      ratchet start renewal_review --input customer=acme --input seats=40 --id renewal-acme
    """
    given = parse_inputs(inputs)
    runner = _runner(ctx, machine, run_id)
    rid = runner.start(machine, given, run_id=run_id, by=_starter(runner, by))
    _warn_if_input_ignored(given, runner.read(rid).input, rid)
    click.echo(rid)


@main.command()
@click.argument("machine", metavar="MACHINE")
@_input
@_id
@_by
@click.pass_context
def run(ctx: click.Context, machine: str, inputs: tuple[str, ...], run_id: str | None, by: str | None) -> None:
    """Start (or continue) a run and drive it in the foreground.

    Starts a run of MACHINE, or continues run --id if it exists. Prints each
    journal record as it becomes durable, then one summary line. Stops
    when the run waits for a trigger, finishes, is cancelled or escalates; sleeps
    through retry back-offs. Exit 0 in every one of those cases.

    Ctrl-C lets the step in flight finish (its outcome is journaled) and starts
    no other; Ctrl-C again stops at once, cutting the step off as a crash would
    (continuing re-runs it with the same key, or escalates it if it is not
    idempotent). During a retry back-off Ctrl-C stops at once. Either way it
    prints how to continue and exits 130, unless the run got to a wait or its
    end anyway (exit 0).

    \b
    Example:
      ratchet run machines/renewal_review.yaml --input customer=acme
      ratchet run renewal_review --id renewal-acme     # continue after a crash
    """
    from engine.run.clock import clock_from_env

    given, ctrl_c = parse_inputs(inputs), CtrlC(clock_from_env(), run_id)
    debug = bool(ctx.find_root().obj.get("debug"))

    def show(record: Record) -> None:
        ctrl_c.note(record)
        journaled = cast("AnyRecord", record)  # the runner journals only these
        click.echo(timeline_line(journaled))
        for line in traceback_lines(journaled) if debug else ():  # --debug: where a failure came from
            click.echo(line)

    runner = _runner(ctx, machine, run_id, on_record=show, clock=ctrl_c)
    with ctrl_c.handling(runner):
        try:
            rs = runner.launch(machine, given, run_id=run_id, by=_starter(runner, by))
            _warn_if_input_ignored(given, rs.input, rs.run_id)
            rs = runner.run(rs.run_id, rs)
        except KeyboardInterrupt:
            pass  # the second Ctrl-C, or one in a back-off: the journal says where the run is
    if ctrl_c.presses:
        rs = _interrupted(ctx, runner, ctrl_c.run_id, machine)
    click.echo(summary(rs))
    hint = next_step(rs)
    if hint:
        click.echo(hint, err=True)  # stderr: stdout's last line stays the summary


class CtrlC:
    """Ctrl-C in `ratchet run`. The first asks the Runner to drain (the step in flight
    finishes, no other starts); the second stops now, as does one during a retry back-off
    (nothing is in flight then). It stands in for the run's clock to know when the runner
    sleeps, and sees the records go by to learn a new run's id.
    """

    def __init__(self, clock: Clock, run_id: str | None) -> None:
        self.clock, self.run_id = clock, run_id
        self.presses = 0
        self.sleeping = False
        self._runner: Runner | None = None

    @contextmanager
    def handling(self, runner: Runner) -> Iterator[None]:
        self._runner = runner
        previous = signal.signal(signal.SIGINT, self._pressed)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _pressed(self, signum: int, frame: FrameType | None) -> None:
        self.presses += 1
        if self.presses > 1 or self.sleeping:
            raise KeyboardInterrupt
        if self._runner is not None:
            self._runner.drain()
        # os.write: a handler may run in the middle of a print to the same stream.
        os.write(2, b"ratchet: stopping after the current step; Ctrl-C again to stop now\n")

    def note(self, record: Record) -> None:
        """See a record go by: a new run's id comes with its first."""
        from journal import RunStarted

        if isinstance(record, RunStarted):
            self.run_id = record.run_id

    def now(self) -> datetime:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        if self.presses:  # asked to stop, and the run is to sleep before a retry: stop now
            raise KeyboardInterrupt
        self.sleeping = True
        try:
            self.clock.sleep(seconds)
        finally:
            self.sleeping = False


def _interrupted(ctx: click.Context, runner: Runner, run_id: str | None, machine: str) -> RunState:
    """After Ctrl-C: the run as its journal has it. One that got to a wait or its end anyway
    is reported as usual; otherwise say where it stopped and how to continue, exit 130."""
    from engine.errors import UnknownRunError

    try:
        rs = runner.read(run_id) if run_id else None
    except UnknownRunError:
        rs = None
    if rs is None or not rs.run_id:
        click.echo("ratchet: interrupted before the run was created", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    owed = rs.ended and rs.todo is not None  # a cancelled run whose on_cancel is still owed
    if rs.status != RunStatus.RUNNING and rs.status != RunStatus.RETRYING and not owed:
        return rs
    step = rs.in_flight
    if owed:
        click.echo(f"run {rs.run_id}: stopped during its on_cancel (key {rs.run_id}/cancel): its outcome "
                   "is unknown; continuing calls it again with the same key")
    elif step is None:
        where = f"before its step in '{rs.state}'"
        if rs.status == RunStatus.RETRYING and rs.deadline is not None:
            where = f"waiting to retry '{rs.state}' (attempt {rs.retry_attempt} due {when(rs.deadline)})"
        click.echo(f"run {rs.run_id}: stopped {where}; nothing in flight")
    else:
        again = ("escalates it as 'unknown outcome' (the state is not idempotent)"
                 if rs.definition["states"][step.state].get("idempotent") is False
                 else f"runs it again with the same key {step.idempotency_key}")
        click.echo(f"run {rs.run_id}: stopped mid-step in '{step.state}' (attempt {step.attempt}): "
                   f"its outcome is unknown; continuing {again}")
    click.echo(f"next: ratchet run {shlex.quote(machine)} --id {rs.run_id} continues it "
               "(or `ratchet supervise`)", err=True)
    ctx.exit(EXIT_INTERRUPTED)


def summary(rs: RunState) -> str:
    """One line: where the run stands. `run ID: waiting in 'review' for approve|reject ...`."""
    head = f"run {rs.run_id}:"
    if rs.status == RunStatus.WAITING:
        who = f" from {', '.join(rs.approvers)}" if rs.approvers else ""
        until = f" until {when(rs.deadline)}" if rs.deadline else " (no deadline)"
        what = "|".join(rs.triggers)
        if rs.brood is not None and rs.brood.state == rs.state:
            what = f"its children ({rs.brood.summary()})" + (f" or {what}" if what else "")
        return f"{head} waiting in '{rs.state}' for {what}{who}{until}"
    if rs.status == RunStatus.FINISHED:
        return f"{head} finished in '{rs.state}'" + (f" (outcome: {rs.outcome})" if rs.outcome else "")
    if rs.status == RunStatus.ESCALATED:
        e = rs.escalation
        if e is not None:
            return f"{head} escalated in '{rs.state}': {e.reason}; ticket {e.ticket}"
    if rs.status == RunStatus.RETRYING and rs.deadline is not None:
        return f"{head} retrying '{rs.state}' (attempt {rs.retry_attempt}) at {when(rs.deadline)}"
    return f"{head} {rs.status} in '{rs.state}'"


def _warn_if_input_ignored(given: dict[str, Any], kept: dict[str, Any], run_id: str) -> None:
    # Same --id twice is one run (idempotent start): its input is the first one, always.
    if given and given != kept:
        click.echo(f"ratchet: warning: run {run_id} already exists; its input stays "
                   f"{json.dumps(kept)} (--input ignored)", err=True)


def next_step(rs: RunState) -> str | None:
    """What a person can do next with a run that stopped to wait for one."""
    if rs.status == RunStatus.WAITING and not rs.triggers:
        return (f"next: `ratchet supervise` runs its children and joins them; "
                f"`ratchet status --tree` shows them, `ratchet tail {rs.run_id}` their ends")
    if rs.status == RunStatus.WAITING:
        who = f"; NAME: {'|'.join(rs.approvers)}" if rs.approvers else ""
        return (f"next: ratchet send {rs.run_id} TRIGGER --by NAME (TRIGGER: {'|'.join(rs.triggers)}{who}); "
                "`ratchet supervise` applies it")
    if rs.status == RunStatus.ESCALATED:
        return f"next: ratchet resolve {rs.run_id} retry|skip TRIGGER|abort --by NAME (see the ticket)"
    return None

