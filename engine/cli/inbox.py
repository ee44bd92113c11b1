"""Commands that write inbox files: `send`, `approve`, `reject`, `resolve`, `cancel`, `upgrade`.

Each writes one file exactly as a manual drop would (engine.supervise.message.write_message: temp
file, fsync, rename into the inbox), so it works whether or not a supervisor is running;
the supervisor applies it, or moves it to inbox/rejected/ saying why. The path written
is printed on stdout. With `--key PATH` the message is signed (engine.trust.envelope) for
the wait the run is in now, valid for `--valid-for` (default 1d on the engine's clock).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from engine.cli.app import EXIT_PROBLEM, UserError, existing_home, main, require_run
from engine.cli.options import MACHINES_DIR, parse_inputs

if TYPE_CHECKING:  # imported lazily at run time: `ratchet --help` stays fast
    from pydantic_core import ErrorDetails

    from engine.home import Home
    from engine.run.replay import RunState
    from engine.supervise.message import Message

_by = click.option("--by", required=True, metavar="NAME",
                   help="Who sends it, kept in the journal (checked against the state's approvers).")
_comment = click.option("--comment", metavar="TEXT", help="A note kept in the journal.")
_data = click.option("--data", "data", multiple=True, metavar="KEY=VALUE",
                     help="Data merged into the run (repeatable); VALUE is read as JSON if it is valid JSON.")
_key = click.option("--key", "key", metavar="PATH",
                    help="Sign the message with this private key ('ratchet keys new NAME' makes one).")
_valid_for = click.option("--valid-for", "valid_for", default="1d", show_default=True, metavar="DURATION",
                          help="With --key: how long the signature may be used (30m, 2h, 1d).")
_FRIENDLY = {  # pydantic's pattern messages, said the way people write these fields
    "trigger": "use lowercase letters, digits and '_', starting with a letter",
    "by": "use letters, digits and '.', '_', '@', '+', '-', starting with a letter or digit",
}


def _write(ctx: click.Context, **fields: Any) -> None:
    """Validate the message, refuse what can never apply, write it into the inbox, print its path.

    What can never apply: an unknown run, a run that has ended, a trigger its machine does
    not have. Everything else (is the run waiting? is NAME an approver?) depends on the
    moment the file is applied, so the supervisor decides it and files the answer in
    inbox/done/ or inbox/rejected/, exactly as for a file dropped by hand.
    """
    from engine.supervise.message import write_message

    key, valid_for = fields.pop("key", None), fields.pop("valid_for", "1d")
    home, message = _check(ctx, **fields)
    rs = _refuse_impossible(home, message)
    if key is not None:
        message = _signed(home, message, rs, key, valid_for)
    click.echo(str(write_message(home, message)))


def _signed(home: Home, message: Message, rs: RunState, key_path: str, valid_for: str) -> Message:
    """`message` signed with the key at `key_path` for the wait the run is in now (its
    `stands_at`), valid for `valid_for` on the engine's clock."""
    import json
    from datetime import timedelta
    from pathlib import Path

    from engine.definition.durations import parse_duration
    from engine.errors import EngineError
    from engine.run.clock import clock_from_env
    from engine.supervise.message import Message
    from engine.trust.envelope import sign
    from engine.trust.people import PeopleFileError, load_people
    from journal.errors import KeyFileError
    from journal.keys import load_private_key, public_pem

    try:
        seconds = parse_duration(valid_for)
        key = load_private_key(Path(key_path))
    except (KeyFileError, ValueError, EngineError) as exc:
        raise UserError(f"--valid-for {valid_for!r} / --key {key_path}: {exc}") from exc
    try:
        people = load_people(home.root)
    except PeopleFileError as exc:
        raise UserError(f"{str(exc).splitlines()[0]} (all of people.yaml must be valid to send)") from exc
    known = people.keys.get(message.by) if people is not None else None
    if people is not None and (known is None or public_pem(known) != public_pem(key)):
        why = "gives no public_key for it" if known is None else "names another public key for it"
        raise UserError(f"--key {key_path} is not {message.by}'s key: {home.root / 'people.yaml'} {why}; "
                        f"hint: sign with {message.by}'s own key, or add its public key to people.yaml")
    expires = clock_from_env().now() + timedelta(seconds=seconds)
    body = json.loads(message.model_dump_json(exclude_defaults=True))
    return Message.model_validate(sign(body, key, rs.stands_at, expires))


def _check(ctx: click.Context, **fields: Any) -> tuple[Home, Message]:
    """The home and the validated message, for a run that exists (a user error otherwise)."""
    from pydantic import ValidationError

    from engine.home import Home
    from engine.supervise.message import Message

    home = Home(existing_home(ctx))
    require_run(home.store, fields["run"])
    try:
        message = Message.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise UserError(f"invalid message: {'; '.join(_problem(e) for e in exc.errors())}") from exc
    return home, message


def _problem(error: ErrorDetails) -> str:
    field = ".".join(map(str, error["loc"])) or "message"
    if error["type"] == "string_pattern_mismatch" and field in _FRIENDLY:
        return f"{field} {error['input']!r}: {_FRIENDLY[field]}"
    return f"{field}: {error['msg']}"


def _refuse_impossible(home: Home, message: Message) -> RunState:
    """The run as journaled now, unless the message can never apply to it (a user error)."""
    from engine.run.replay import fold

    rs = fold(home.store.read(message.run).records)
    if rs.ended:
        raise UserError(f"run '{message.run}' is {rs.status} (in '{rs.state}'); it takes no more messages")
    triggers = list(dict.fromkeys(t["trigger"] for t in rs.definition.get("transitions", [])))
    if message.trigger is not None and message.trigger not in triggers:
        raise UserError(f"machine '{rs.machine}' of run '{message.run}' has no trigger "
                        f"'{message.trigger}'; its triggers: {', '.join(triggers)}")
    return rs


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
    from engine.supervise.message import MAX_BYTES, write_message

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
        message = _signed(home, message, rs, key, valid_for)
    size = len(message.model_dump_json(exclude_defaults=True))
    if size >= MAX_BYTES:
        raise UserError(f"{machine}: the definition makes a {size}-byte inbox file, over the "
                        f"{MAX_BYTES}-byte limit of inbox files; make the definition smaller")
    click.echo(str(write_message(home, message)))
