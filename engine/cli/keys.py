"""`ratchet keys`: Ed25519 key pairs for people who sign inbox messages, and the home's sealing key."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.app import UserError, existing_home, main


@main.group()
def keys() -> None:
    """Ed25519 keys: people's signing keys, the home's seal key.

    \b
    Example:
      ratchet keys new bob --out ~/.ratchet-bob.key
      ratchet keys export -o acme-home.pub
    """


@keys.command("new")
@click.argument("name", metavar="NAME")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Where to write the private key (default ./NAME.key; mode 0600, never overwritten).")
@click.pass_context
def new(ctx: click.Context, name: str, out: Path | None) -> None:
    """Make an Ed25519 key pair for person NAME, who signs inbox messages with it.

    The private key goes to the person (./NAME.key or --out, mode 0600): keep it
    secret, pass it to `send/approve/reject/resolve/cancel/upgrade --key`. The
    public key goes into HOME/keys/NAME.pub. Then add the line printed to
    HOME/people.yaml, so that the supervisor accepts messages NAME signed.

    \b
    Example:
      ratchet keys new bob --out ~/.ratchet-bob.key
      ratchet approve renewal-acme --by bob --key ~/.ratchet-bob.key
    """
    import re

    from engine.home import Home
    from engine.run.sealing import key_paths
    from engine.trust.people import PERSON_PATTERN
    from journal.durable import publish
    from journal.keys import new_private_key, public_pem

    if not re.match(PERSON_PATTERN, name):
        raise UserError(f"invalid name {name!r}: use letters, digits and '.', '_', '@', '+', '-', "
                        "starting with a letter or digit (as in --by)")
    home = Home(existing_home(ctx))
    public = home.root / "keys" / f"{name}.pub"
    if public in key_paths(home):
        raise UserError(f"the name {name!r} is reserved: {public} is the home's sealing key (ratchet keys export); "
                        "hint: choose another name")
    private = out if out is not None else Path(f"{name}.key")
    for path, whose in ((public, "public"), (private, "private")):
        if path.exists():
            raise UserError(f"{path}: a {whose} key is there already; hint: remove it first (messages signed "
                            "with the old key stop verifying), or choose another --out")
    try:
        key = new_private_key(private)
    except OSError as exc:
        raise UserError(f"{private}: cannot write the private key ({exc.strerror}); "
                        "hint: choose another --out") from exc
    public.parent.mkdir(parents=True, exist_ok=True)
    publish(public.with_name(f".{public.name}.tmp"), public, public_pem(key), exclusive=True)
    click.echo(f"private key: {private} (mode 0600: keep it secret; sign with --key {private})")
    click.echo(f"public key:  {public}")
    click.echo(f"add to {home.root / 'people.yaml'}:")
    click.echo(f"  {name}: {{public_key: keys/{name}.pub}}")


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
