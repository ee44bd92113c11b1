"""Commands that write inbox files: `send`, `approve`, `reject`, `resolve`.

Each writes one file exactly as a manual drop would (engine.inbox.write_message: temp
file, fsync, rename into the inbox), so it works whether or not a supervisor is running;
the supervisor applies it, or moves it to inbox/rejected/ saying why. The path written
is printed on stdout.
"""

from __future__ import annotations

import click

from engine.cli.app import UserError, home_of, main
from engine.cli.runs import parse_inputs

_by = click.option("--by", required=True, metavar="NAME", help="Who sends it (checked against the state's approvers).")
_comment = click.option("--comment", metavar="TEXT", help="A note kept in the journal.")


def _write(ctx: click.Context, **fields) -> None:
    from pydantic import ValidationError

    from engine.home import Home
    from engine.inbox import Message, write_message

    home = Home(home_of(ctx))
    try:
        message = Message.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        raise UserError(f"invalid message: {problems}") from exc
    if not home.store.exists(message.run):
        raise UserError(f"no run '{message.run}' in {home.runs}; see 'ratchet status'")
    click.echo(str(write_message(home, message)))


@main.command()
@click.argument("run_id", metavar="ID")
@click.argument("trigger", metavar="TRIGGER")
@_by
@click.option("--data", "data", multiple=True, metavar="KEY=VALUE",
              help="Data merged into the run (repeatable); VALUE is read as JSON if it is valid JSON.")
@_comment
@click.pass_context
def send(ctx: click.Context, run_id: str, trigger: str, by: str, data: tuple[str, ...], comment: str | None) -> None:
    """Send TRIGGER to run ID through the inbox.

    \b
    Example:
      ratchet send onboarding-42 customer_replied --by crm --data answer=yes
    """
    _write(ctx, run=run_id, trigger=trigger, by=by, comment=comment, data=parse_inputs(data) or None)


@main.command()
@click.argument("run_id", metavar="ID")
@_by
@_comment
@click.pass_context
def approve(ctx: click.Context, run_id: str, by: str, comment: str | None) -> None:
    """Send `approve` to run ID (shorthand of `send ID approve`).

    \b
    Example:
      ratchet approve renewal-acme --by alice --comment "fine by me"
    """
    _write(ctx, run=run_id, trigger="approve", by=by, comment=comment)


@main.command()
@click.argument("run_id", metavar="ID")
@_by
@_comment
@click.pass_context
def reject(ctx: click.Context, run_id: str, by: str, comment: str | None) -> None:
    """Send `reject` to run ID (shorthand of `send ID reject`).

    \b
    Example:
      ratchet reject renewal-acme --by bob --comment "price too low"
    """
    _write(ctx, run=run_id, trigger="reject", by=by, comment=comment)


@main.command()
@click.argument("run_id", metavar="ID")
@click.argument("action", type=click.Choice(["retry", "skip", "abort"]))
@click.argument("trigger", required=False, metavar="[TRIGGER]")
@_by
@_comment
@click.pass_context
def resolve(ctx: click.Context, run_id: str, action: str, trigger: str | None, by: str, comment: str | None) -> None:
    """Resolve escalated run ID: retry the state, skip by firing TRIGGER, or abort the run.

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
    _write(ctx, run=run_id, resolve=action, trigger=trigger, by=by, comment=comment)
