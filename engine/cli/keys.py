"""`ratchet keys`: Ed25519 key pairs for people who sign inbox messages, and the home's sealing key."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.app import UserError, existing_home, main


@main.group()
def keys() -> None:
    """Ed25519 keys: the home's seal key, people's signing keys.

    \b
    Example:
      ratchet keys export -o acme-home.pub
    """


@keys.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write the public key to FILE (refused if it exists) instead of stdout.")
@click.pass_context
def export_key(ctx: click.Context, output: Path | None) -> None:
    """Print the home's public sealing key (PEM), for auditors.

    The home's Ed25519 key (HOME/keys/home.key, mode 0600) signs the seals
    of every journal; it is created on first use (the first `ratchet start`
    or `run` in the home, or this command). Give its public half to whoever audits the
    journals: `ratchet verify --key FILE` then checks the seals with their
    own copy, and journal/FORMAT.md shows how to check one with openssl.

    \b
    Example:
      ratchet keys export > acme-home.pub
      ratchet verify --key acme-home.pub
      openssl pkey -pubin -in acme-home.pub -outform DER | sha256sum | cut -c1-16   # its key id
    """
    from engine.home import Home
    from engine.run.sealing import home_key
    from journal.keys import key_id, public_pem

    key = home_key(Home(existing_home(ctx)))
    pem = public_pem(key)
    if output is None:
        click.echo(pem, nl=False)
        return
    try:
        with open(output, "xb") as f:
            f.write(pem)
    except FileExistsError:
        raise UserError(f"{output}: already exists; hint: choose another file or remove it") from None
    click.echo(f"{output}: public key {key_id(key)} of {existing_home(ctx)}", err=True)
