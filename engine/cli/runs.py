"""Commands that create and drive runs: `ratchet start` and `ratchet run`.

`start` only journals a run's pinned definition (the supervisor, or `run`, drives it).
`run` drives a run in this process, printing each record as it becomes durable, until
the run waits for someone, ends or escalates; it sleeps through retry back-offs.
Both are idempotent on `--id`: `ratchet run M --id X` after a crash continues run X.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from engine.cli.app import home_of, main
from engine.cli.options import MACHINES_DIR, parse_inputs
from engine.cli.timeline import timeline_line, traceback_lines, when
from engine.run.status import RunStatus

if TYPE_CHECKING:  # the runner stack is imported lazily: `ratchet --help` stays fast
    from engine.run.replay import RunState
    from engine.run.runner import Runner


def _runner(ctx: click.Context, machine: str, run_id: str | None, *, echo: bool = False) -> Runner:
    """A runner on the home, created only once the run can be written: a command that fails
    first (an unknown machine, a bad definition or id) leaves no empty home behind."""
    from engine.definition.loader import load_machine  # lazy: keeps `ratchet --help` fast
    from engine.home import Home
    from engine.run.runner import Runner
    from journal import check_run_id

    load_machine(machine, MACHINES_DIR)  # loaded once: the runner's load hits the loader's cache
    if run_id is not None:
        check_run_id(run_id)
    debug = bool(ctx.find_root().obj.get("debug"))

    def on_record(record: Any) -> None:
        click.echo(timeline_line(record))
        for line in traceback_lines(record) if debug else ():  # --debug: where a failure came from
            click.echo(line)

    return Runner(Home(home_of(ctx)).ensure(), machines_dir=MACHINES_DIR,
                  on_record=on_record if echo else None)


_input = click.option("--input", "inputs", multiple=True, metavar="KEY=VALUE",
                      help="Run input (repeatable); VALUE is read as JSON if it is valid JSON.")
_id = click.option("--id", "run_id", metavar="ID", help="The run's id (default: a new ULID). Same id twice: one run.")
_by = click.option("--by", metavar="NAME", help="Who starts the run (kept in the journal).")


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
    rid = runner.start(machine, given, run_id=run_id, by=by)
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

    \b
    Example:
      ratchet run machines/renewal_review.yaml --input customer=acme
      ratchet run renewal_review --id renewal-acme     # continue after a crash
    """
    given = parse_inputs(inputs)
    runner = _runner(ctx, machine, run_id, echo=True)
    rs = runner.launch(machine, given, run_id=run_id, by=by)
    _warn_if_input_ignored(given, rs.input, rs.run_id)
    rs = runner.run(rs.run_id, rs)
    click.echo(summary(rs))
    hint = next_step(rs)
    if hint:
        click.echo(hint, err=True)  # stderr: stdout's last line stays the summary


def summary(rs: RunState) -> str:
    """One line: where the run stands. `run ID: waiting in 'review' for approve|reject ...`."""
    head = f"run {rs.run_id}:"
    if rs.status == RunStatus.WAITING:
        who = f" from {', '.join(rs.approvers)}" if rs.approvers else ""
        until = f" until {when(rs.deadline)}" if rs.deadline else " (no deadline)"
        return f"{head} waiting in '{rs.state}' for {'|'.join(rs.triggers)}{who}{until}"
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
    if rs.status == RunStatus.WAITING:
        who = f"; NAME: {'|'.join(rs.approvers)}" if rs.approvers else ""
        return (f"next: ratchet send {rs.run_id} TRIGGER --by NAME (TRIGGER: {'|'.join(rs.triggers)}{who}); "
                "`ratchet supervise` applies it")
    if rs.status == RunStatus.ESCALATED:
        return f"next: ratchet resolve {rs.run_id} retry|skip TRIGGER|abort --by NAME (see the ticket)"
    return None

