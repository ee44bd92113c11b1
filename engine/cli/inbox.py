"""Commands that write inbox files: `send`, `approve`, `reject`, `resolve`, `cancel`, `upgrade`.

Each writes one file exactly as a manual drop would (engine.supervise.sending, shared with
the Python API `engine.Ratchet`: checked, then written to a temp file, fsync'd and renamed
into the inbox), so it works whether or not a supervisor is running;
the supervisor applies it, or moves it to inbox/rejected/ saying why. The path written
is printed on stdout. On PostgreSQL a signed message, or any message in an open home, is
posted to the messages table instead (any host's supervisor delivers it), and its place
there is printed. With `--key PATH` the message is signed (engine.trust.envelope) for
the wait the run is in now, valid for `--valid-for` (default 1d on the engine's clock).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from engine.cli.app import EXIT_PROBLEM, UserError, existing_home, main, require_run
from engine.cli.options import MACHINES_DIR, parse_inputs

if TYPE_CHECKING:  # imported lazily at run time: `ratchet --help` stays fast
    from engine.home import Home
    from engine.supervise.message import Message
    from engine.supervise.sending import Sent

_by = click.option("--by", required=True, metavar="NAME",
                   help="Who sends it, kept in the journal (checked against the state's approvers).")
_comment = click.option("--comment", metavar="TEXT", help="A note kept in the journal.")
_data = click.option("--data", "data", multiple=True, metavar="KEY=VALUE",
                     help="Data merged into the run (repeatable); VALUE is read as JSON if it is valid JSON.")
_key = click.option("--key", "key", metavar="PATH",
                    help="Sign the message with this private key ('ratchet keys new NAME' makes one).")
_valid_for = click.option("--valid-for", "valid_for", default="1d", show_default=True, metavar="DURATION",
                          help="With --key: how long the signature may be used (30m, 2h, 1d).")


def _write(ctx: click.Context, **fields: Any) -> None:
    """Validate the message, refuse what can never apply, write it into the inbox, print its path.

    engine.supervise.sending does all three, for this command line and for `engine.Ratchet`
    alike: what can never apply is an unknown run, a run that has ended, a trigger its
    machine does not have. Everything else (is the run waiting? is NAME an approver?)
    depends on the moment the file is applied, so the supervisor decides it and files the
    answer in inbox/done/ or inbox/rejected/, exactly as for a file dropped by hand.
    """
    from engine.supervise.sending import send

    key, valid_for = fields.pop("key", None), fields.pop("valid_for", "1d")
    home, message = _check(ctx, **fields)
    _said(send(home, message, **_signing(key, valid_for)))


def _said(sent: Sent) -> None:
    """Print where the message went: the inbox file's path, or the row's place in the store
    (PostgreSQL); and, on stderr, why it is a file when a row was possible."""
    click.echo(sent.where)
    if sent.note:
        click.echo(f"ratchet: note: {sent.note}", err=True)


def _signing(key_path: str | None, valid_for: str) -> dict[str, Any]:
    """send()'s keyword arguments for `--key PATH --valid-for DURATION` (none without --key)."""
    if key_path is None:
        return {}
    from pathlib import Path

    from engine.definition.durations import parse_duration
    from journal.keys import load_private_key

    try:
        seconds = parse_duration(valid_for)
    except ValueError as exc:
        raise UserError(f"--valid-for {valid_for!r}: {exc}") from exc
    return {"key": load_private_key(Path(key_path)), "valid_for": seconds}


def _check(ctx: click.Context, **fields: Any) -> tuple[Home, Message]:
    """The home and the validated message, for a run that exists (a user error otherwise)."""
    from engine.home import Home
    from engine.supervise.sending import compose

    home = Home(existing_home(ctx))
    require_run(home.store, fields["run"])
    return home, compose(**fields)


@main.command()
@click.argument("run_id", metavar="ID")
@click.argument("trigger", metavar="TRIGGER")
@_by
@_data
@_comment
@_key
@_valid_for
@click.pass_context
def send(ctx: click.Context, run_id: str, trigger: str, by: str, data: tuple[str, ...], comment: str | None,
         key: str | None, valid_for: str) -> None:
    """Send TRIGGER to run ID: write a trigger file into the inbox.

    The file is written exactly as a manual drop would be (in inbox/.tmp, then
    renamed in) and its path is printed. A running supervisor applies it at
    once, a later one when it starts; applied files go to inbox/done/, refused
    ones (not waiting for it, not an approver) to inbox/rejected/ with the reason.
    On a PostgreSQL store a signed message (or any, in a home without people.yaml)
    is posted to the messages table instead, for any host's supervisor.

    \b
    Example:
      ratchet send onboarding-initech reply --by crm --data team_size=12
    """
    _write(ctx, run=run_id, trigger=trigger, by=by, comment=comment, data=parse_inputs(data, "--data") or None,
           key=key, valid_for=valid_for)


@main.command()
@click.argument("run_id", metavar="ID")
@_by
@_data
@_comment
@_key
@_valid_for
@click.pass_context
def approve(ctx: click.Context, run_id: str, by: str, data: tuple[str, ...], comment: str | None,
            key: str | None, valid_for: str) -> None:
    """Approve run ID (shorthand of `send ID approve`).

    Writes an inbox file and prints its path, as `ratchet send` does
    (--data too).

    \b
    Example:
      ratchet approve renewal-acme --by alice --comment "fine by me"
      ratchet approve renewal-acme --by alice --data seats=40
    """
    _write(ctx, run=run_id, trigger="approve", by=by, comment=comment, data=parse_inputs(data, "--data") or None,
           key=key, valid_for=valid_for)


@main.command()
@click.argument("run_id", metavar="ID")
@_by
@_data
@_comment
@_key
@_valid_for
@click.pass_context
def reject(ctx: click.Context, run_id: str, by: str, data: tuple[str, ...], comment: str | None,
           key: str | None, valid_for: str) -> None:
    """Reject run ID (shorthand of `send ID reject`).

    Writes an inbox file and prints its path, as `ratchet send` does
    (--data too).

    \b
    Example:
      ratchet reject renewal-acme --by bob --comment "price too low"
    """
    _write(ctx, run=run_id, trigger="reject", by=by, comment=comment, data=parse_inputs(data, "--data") or None,
           key=key, valid_for=valid_for)


@main.command()
@click.argument("run_id", metavar="ID")
@click.argument("action", type=click.Choice(["retry", "skip", "abort"]))
@click.argument("trigger", required=False, metavar="[TRIGGER]")
@click.option("--by", required=True, metavar="NAME", help="Who resolves it (kept in the journal).")
@_comment
@_key
@_valid_for
@click.pass_context
def resolve(ctx: click.Context, run_id: str, action: str, trigger: str | None, by: str, comment: str | None,
            key: str | None, valid_for: str) -> None:
    """Resolve an escalated run: retry, skip (fire TRIGGER) or abort.

    retry runs the escalated state again (a waiting state waits again); skip
    fires TRIGGER from it as if the state had produced it; abort cancels the
    run. Writes an inbox file and prints its path, as `ratchet send` does; the
    run's ticket in HOME/escalations/ lists the resolutions that apply.

    \b
    Example:
      ratchet resolve renewal-acme retry --by ops
      ratchet resolve renewal-acme skip approve --by alice
      ratchet resolve renewal-acme abort --by ops --comment "customer left"
    """
    if action == "skip" and not trigger:
        raise UserError("resolve skip needs the TRIGGER to fire, e.g. 'ratchet resolve ID skip approve --by NAME'")
    if action != "skip" and trigger:
        raise UserError(f"resolve {action} takes no TRIGGER")
    _write(ctx, run=run_id, resolve=action, trigger=trigger, by=by, comment=comment, key=key, valid_for=valid_for)


@main.command()
@click.argument("run_id", metavar="ID")
@click.option("--by", required=True, metavar="NAME", help="Who cancels it (kept in the journal).")
@click.option("--reason", metavar="TEXT", help="Why, kept in the journal's `cancelled` record.")
@_key
@_valid_for
@click.pass_context
def cancel(ctx: click.Context, run_id: str, by: str, reason: str | None, key: str | None, valid_for: str) -> None:
    """End run ID, whatever it is doing, unless it has ended already.

    A waiting, retrying, escalated or running run is cancelled. If a step is in
    flight, the supervisor kills its worker first; `cancelled` names that step, as
    "outcome unknown" when it is not idempotent (check the outside system). Then the
    machine's `on_cancel` compensation, if any, runs once. Writes an inbox file and
    prints its path, as `ratchet send` does.

    \b
    Example:
      ratchet cancel renewal-acme --by ops --reason "customer left"
    """
    _write(ctx, run=run_id, cancel=True, by=by, reason=reason, key=key, valid_for=valid_for)


@main.command()
@click.argument("run_id", metavar="ID")
@click.argument("machine", metavar="MACHINE")
@click.option("--by", required=True, metavar="NAME", help="Who upgrades it (kept in the journal).")
@_comment
@_key
@_valid_for
@click.pass_context
def upgrade(ctx: click.Context, run_id: str, machine: str, by: str, comment: str | None,
            key: str | None, valid_for: str) -> None:
    """Move live run ID to MACHINE, a new version of its machine.

    MACHINE is validated, then checked against the run as journaled now: the same
    machine with another version, the run's state there with the same kind, a wait
    whose triggers remain and whose new deadline is not past, a retry the new
    policy still allows, and no step in flight. Every reason it cannot move is
    printed, one per line (exit 1). Otherwise an inbox file carrying the new
    definition is written and its path printed; the supervisor checks again when it
    applies it, then journals `upgraded` and the run goes on under the new version.

    \b
    Example:
      ratchet upgrade renewal-acme machines/renewal_review.yaml --by ops
    """
    from pathlib import Path

    from engine.definition.loader import load_machine
    from engine.run.clock import clock_from_env
    from engine.run.replay import fold
    from engine.run.upgrade import incompatibilities
    from engine.supervise.message import MAX_BYTES
    from engine.supervise.sending import post_or_drop

    new = load_machine(machine, MACHINES_DIR)
    source = str(Path(new.source).resolve()) if new.source else None
    home, message = _check(ctx, run=run_id, by=by, comment=comment, upgrade={
        "definition": new.definition, "definition_hash": new.hash, "source": source})
    rs = fold(home.store.read(run_id).records)
    reasons = incompatibilities(rs, new, clock_from_env().now())
    for reason in reasons:
        click.echo(f"ratchet: error: run '{run_id}' cannot move to {new.name} v{new.spec.version}: {reason}", err=True)
    if reasons:
        raise click.exceptions.Exit(EXIT_PROBLEM)
    if key is not None:
        from engine.supervise.sending import signed

        message = signed(home, message, rs, **_signing(key, valid_for))
    size = len(message.model_dump_json(exclude_defaults=True))
    if size >= MAX_BYTES:
        raise UserError(f"{machine}: the definition makes a {size}-byte inbox file, over the "
                        f"{MAX_BYTES}-byte limit of inbox files; make the definition smaller")
    _said(post_or_drop(home, message, rs))
