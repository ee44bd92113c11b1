"""`ratchet export`, `ratchet import` and `ratchet db init`: journals in and out of a store.

`export ID` writes a run's journal to stdout as the exact bytes of its JSON lines, from any
store: from PostgreSQL it is byte for byte the file the file store would hold, so
`ratchet verify FILE`, journal/FORMAT.md's `sha256sum` recipe and `jq` read it alike.
`import FILE...` verifies each file journal (structure, seq, hash chain) and copies it
into the store, line for line; a run already there with the same journal is skipped, with
another journal refused. `db init` creates or migrates a database store's tables (the
store also does it on first use).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.cli.app import UserError, existing_home, home_of, main

if TYPE_CHECKING:
    from journal import Record, Store


@main.command()
@click.argument("run_id", metavar="ID")
@click.pass_context
def export(ctx: click.Context, run_id: str) -> None:
    """Write run ID's journal to stdout, byte for byte.

    From any store, archived runs too: the file the file store holds, line for
    line, so `ratchet verify FILE`, `sha256sum` and `jq` read it as they would.

    \b
    Example:
      ratchet export renewal-acme > renewal-acme.jsonl
      ratchet verify renewal-acme.jsonl
    """
    from engine.home import Home
    from journal import check_run_id

    store = Home(existing_home(ctx)).store
    out = sys.stdout.buffer
    if store.exists(check_run_id(run_id)):
        for line, _record in store.follow(run_id, stop=lambda: True):  # what is there now, then stop
            out.write(line + b"\n")
    elif run_id in store.archived_ids():
        for line, _record in store.archived_lines(run_id):
            out.write(line + b"\n")
    else:
        raise UserError(f"no run '{run_id}' in {store.location}; see 'ratchet status --all'")
    out.flush()


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def import_(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Copy file journals into the store, each verified first.

    FILE is a run's .jsonl (a file store's HOME/runs/ID.jsonl, or an export). A
    journal whose chain does not verify is refused and nothing of it is written.
    Importing the same journal again is a no-op; a run already in the store with
    another journal is refused. Stop the supervisors of the old home first: a run
    still advancing there would go on without the copy.

    \b
    Example:
      ratchet --store postgresql://ratchet@db/ratchet import ~/.ratchet/runs/*.jsonl
    """
    from engine.cli.progress import progress
    from engine.home import Home

    store = Home(home_of(ctx)).store
    failed = 0
    with progress("import", len(files)) as shown:  # on a terminal only (stderr)
        for path in files:
            shown.advance(path.name)
            try:
                shown.echo(f"{path}: {_import_one(store, path)}")
            except UserError as exc:
                shown.echo(f"ratchet: error: {exc.format_message()}", err=True)
                failed += 1
    if failed:
        ctx.exit(1)


def _import_one(store: Store, path: Path) -> str:
    from journal import encode, line_hash, verify
    from journal.records import decode

    try:
        result = verify(path)
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc}); nothing imported") from exc
    if not result.ok:
        raise UserError(f"{result.path}:{result.line}: {result.problem}; nothing imported")
    if result.records == 0:
        raise UserError(f"{path}: no records; nothing imported")
    lines = raw[: len(raw) - result.torn_bytes].splitlines()
    records = [decode(line) for line in lines]
    if any(encode(record) != line for record, line in zip(records, lines, strict=True)):
        raise UserError(f"{path}: a line is not in the form this Ratchet writes (it would not be copied byte for "
                        "byte); nothing imported; hint: upgrade Ratchet")
    run_id = str(getattr(records[0], "run_id", ""))
    with store.writer(run_id, create=True) as writer:
        if writer.last_seq:
            if writer.cursor.head == result.last_hash and writer.last_seq == result.records:
                _bring_seal(store, run_id, path, records)  # an import made before seals came along
                return f"run '{run_id}' is already in {store.location} with this journal; skipped"
            raise UserError(f"{path}: run '{run_id}' is already in {store.location} with another journal "
                            f"({writer.last_seq} records); nothing imported")
        writer.append_many(records)
        if writer.cursor.head != line_hash(lines[-1]):  # the copy's chain must end where the file's does
            raise UserError(f"{path}: the imported journal of run '{run_id}' does not end where the file does; "
                            "run 'ratchet verify'")
    _bring_seal(store, run_id, path, records)
    torn = f" (a torn last line of {result.torn_bytes} bytes left out)" if result.torn_bytes else ""
    return f"imported run '{run_id}' ({result.records} records) into {store.location}{torn}"


def _bring_seal(store: Store, run_id: str, path: Path, records: Sequence[Record]) -> None:
    """Keep the run's latest seal in the store too (`verify` asks for it): the copy its old home
    kept (HOME/seals/ID.json beside HOME/runs/ID.jsonl: so a journal cut back before it still
    shows), else the journal's last seal. Never replaces one the store has."""
    import msgspec

    from journal import Sealed
    from journal.seal import fetch_seal, publish_seal

    try:
        if fetch_seal(store, run_id) is not None:
            return
    except ValueError:
        return  # damaged: `verify` says so; not the import's to paper over
    kept = path.parent.parent / "seals" / f"{run_id}.json"
    try:
        seal: Sealed | None = msgspec.json.decode(kept.read_bytes(), type=Sealed)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        seal = next((r for r in reversed(records) if isinstance(r, Sealed)), None)
    if seal is not None:
        publish_seal(store, run_id, seal)


@main.group()
def db() -> None:
    """Set up a PostgreSQL store's tables: `db init`.

    The store (--store / RATCHET_STORE) also creates them on first use.

    \b
    Example:
      ratchet --store postgresql://ratchet@db.internal/ratchet db init
    """


@db.command("init")
@click.pass_context
def db_init(ctx: click.Context) -> None:
    """Create or migrate the store's tables (also done on first use).

    \b
    Example:
      ratchet --store postgresql://ratchet@db.internal/ratchet db init
    """
    from engine.home import Home

    store = Home(home_of(ctx)).store
    if not store.location.startswith("postgresql://"):
        raise UserError(f"{store.location}: a file store has no tables; hint: pass --store postgresql://...")
    from journal.pg_store import PgStore  # psycopg: installed with the `pg` extra

    if not isinstance(store, PgStore):
        raise UserError(f"{store.location}: not a PostgreSQL store")
    before, after = store.init()
    said = "up to date" if before == after else "created" if before == 0 else f"migrated from version {before}"
    click.echo(f"{store.location}: schema version {after} ({said})")
