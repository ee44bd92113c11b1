"""Commands that read journals for an audit: `ratchet verify` and `ratchet tail`.

Both only read: they take no lock and never change a journal, so they are safe on a
run that is being advanced right now. Both read archived runs too (`ratchet archive`):
a run id is looked up in runs/ first, then in the archive.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.cli.app import existing_home, main, require_run
from engine.cli.progress import progress
from engine.cli.timeline import timeline_line, traceback_lines
from journal import Store, check_run_id
from journal.verify import torn_note

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _store(ctx: click.Context) -> Store:
    from engine.home import Home  # lazy: keeps `ratchet --help` fast

    return Home(existing_home(ctx)).store


def _archived(store: Store, run_id: str) -> bool:
    """Is `run_id` an archived run (and not a live one)? A user error if it is neither."""
    if store.exists(check_run_id(run_id)):
        return False
    if run_id in store.archived_ids():
        return True
    require_run(store, run_id)  # says "no run" the usual way
    return False


def _note_doubles(store: Store, run_ids: list[str]) -> None:
    for run_id in sorted(set(run_ids) & set(store.archived_ids())):
        click.echo(f"ratchet: warning: run {run_id} is in both runs/ and archive/ (an archive cut short "
                   "by a crash); 'ratchet archive' finishes it", err=True)


@main.command()
@click.argument("run_ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "everything", is_flag=True, help="Also every archived run (HOME/archive).")
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), metavar="PUB",
              help="Check seals with this public key (PEM, from 'ratchet keys export') instead of "
                   "HOME/keys/home.pub: an auditor's own copy.")
@click.pass_context
def verify(ctx: click.Context, run_ids: tuple[str, ...], everything: bool, key_file: Path | None) -> None:
    """Check journals: structure, seq, hash chain and seals.

    Checks the runs given (archived ones too), or every run in HOME/runs (and,
    with --all, every archived run). An ID that is a .jsonl file is a
    journal file, e.g. one written by `ratchet export`. Prints one line per journal,
    `ID: ok (N records; sealed through line M)` or `PATH:LINE: problem`, and exits 1 if any journal
    is damaged.

    Seals are signed checkpoints of the chain, made with the home's key
    whenever a run waits, escalates or ends: a journal edited and re-chained,
    sealed by another key, or cut back to before its last seal (the home keeps
    each run's latest seal in HOME/seals/) fails. A journal with no seal at all
    (written before sealing, or that has not yet waited or ended) is reported
    `unsealed` and does not fail: check its chain's head against a copy
    you keep. --key checks with your own copy of the public key, so a key
    replaced in the home cannot vouch for a forged seal.

    A torn tail (a last line without its newline) is reported but does not
    fail: it is what a crash mid-write leaves (or a write in progress on a live
    run), the record never counted, and the next writer cuts it off. Failing
    on it would call every crash tampering.

    \b
    Example:
      ratchet verify
      ratchet verify 01JD8X3K renewal-acme
      ratchet verify --key /audit/acme-home.pub --all
    """
    files = [arg for arg in run_ids if arg.endswith(".jsonl") and os.path.isfile(arg)]  # `ratchet export`ed
    public = _seal_key(ctx, key_file) if files and key_file is not None else None
    bad_files = sum(not _verify_file(Path(arg), public) for arg in files)
    run_ids = tuple(arg for arg in run_ids if arg not in files)
    if files and not run_ids:
        ctx.exit(1 if bad_files else 0)
    store = _store(ctx)
    public = _seal_key(ctx, key_file)
    given = [(run_id, _archived(store, run_id)) for run_id in run_ids]
    live = store.run_ids()
    ids = given or [(run_id, False) for run_id in live]
    if everything and not run_ids:
        ids += [(run_id, True) for run_id in store.archived_ids()]
        _note_doubles(store, live)
    if not ids:
        click.echo(f"no journals in {store.location}", err=True)
    bad = 0
    with progress("verify", len(ids)) as shown:  # on a terminal only (stderr)
        for run_id, archived in ids:
            shown.advance(run_id)
            try:
                ok, line = _verify_one(store, run_id, archived, public)
            except OSError as exc:
                ok, line = False, f"{store.where(run_id)}: cannot read ({exc.strerror or exc})"
            shown.echo(line)
            bad += not ok
    if bad or bad_files:
        ctx.exit(1)


def _verify_file(path: Path, public: Ed25519PublicKey | None) -> bool:
    """Verify one journal file given by its path (its chain; its seals too with --key, since
    a file carries no home); says the verdict; True if it is sound."""
    from journal import read
    from journal import verify as verify_journal
    from journal.seal import check

    try:
        result = verify_journal(path)
        records = read(path).records if result.ok and public is not None else []
    except OSError as exc:
        click.echo(f"{path}: cannot read ({exc.strerror or exc})")
        return False
    if not result.ok:
        click.echo(str(result))
        return False
    if public is None:
        click.echo(f"{path}: {result} (seals not checked: give --key)")
        return True
    run_id = str(getattr(records[0], "run_id", "")) if records else ""
    sealed = check(records, run_id, public, None, detached=True)
    if not sealed.ok:
        click.echo(f"{path}:{sealed.line}: {sealed.problem}")
        return False
    click.echo(f"{path}: ok ({result.records} records; {sealed.note()})")
    return True


def _seal_key(ctx: click.Context, key_file: Path | None) -> Ed25519PublicKey | None:
    """The key seals must be made by: the auditor's (--key), else the home's (None: none yet)."""
    from engine.home import Home
    from engine.run.sealing import home_public_key
    from journal.keys import load_public_key

    if key_file is not None:
        return load_public_key(key_file)
    return home_public_key(Home(existing_home(ctx)))


def _verify_one(store: Store, run_id: str, archived: bool, public: Ed25519PublicKey | None) -> tuple[bool, str]:
    """Whether one journal holds, and `verify`'s line for it: `ID: ok (...)` or `PATH:LINE: problem`."""
    from journal.seal import check, fetch_seal

    try:
        side = fetch_seal(store, run_id)  # first: it is never ahead of the journal read after it
    except ValueError as exc:
        return False, f"{exc}: the home's latest seal of run '{run_id}' was damaged or replaced"
    result = store.verify_archived(run_id) if archived else store.verify(run_id)
    if not result.ok:
        return False, str(result)
    records = ([record for _, record in store.archived_lines(run_id)] if archived
               else store.read(run_id).records)
    sealed = check(records, run_id, public, side)
    if not sealed.ok:
        return False, f"{result.path}:{sealed.line}: {sealed.problem}"
    torn = f"; {torn_note(result.torn_bytes)}" if result.torn else ""
    note = f"; {sealed.note()}" if sealed.sealed or public is not None else ""  # no key, no seal: nothing to say
    return True, f"{run_id}{' (archived)' if archived else ''}: ok ({result.records} records{note}){torn}"


@main.command()
@click.argument("run_id", metavar="ID")
@click.option("-f", "--follow", "live", is_flag=True,
              help="Keep printing records as they are appended, until the run ends (or Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print the journal lines themselves (exact bytes), for jq.")
@click.option("-v", "--verbose", is_flag=True, help="Also print each failed step's traceback, under its line.")
@click.pass_context
def tail(ctx: click.Context, run_id: str, live: bool, as_json: bool, verbose: bool) -> None:
    """Print a run's journal as a readable timeline.

    One line per record.
    Each line shows the time (UTC), the record's seq, what happened, the
    state, the attempt, who did it, state changes and durations; a failed
    step, where its error was raised (`at FILE:LINE`; --verbose adds its
    traceback). A torn tail (a crash mid-write) is noted on stderr. With -f it
    follows the run and exits after its last record once the run has ended. An
    archived run is read from HOME/archive.

    \b
    Example:
      ratchet tail renewal-acme
      ratchet tail renewal-acme --verbose
      ratchet tail renewal-acme -f
      ratchet tail renewal-acme --json | jq -c 'select(.type=="step_failed")'
    """
    store = _store(ctx)
    archived = _archived(store, run_id)
    if not archived:
        _note_doubles(store, [run_id])
    from engine.errors import EngineError
    from engine.run.replay import RunState

    folded = RunState()  # `tail -f` stops once the run has ended and owes nothing more (an on_cancel)
    ended = False

    def stop() -> bool:
        return ended or not live

    try:
        lines = store.archived_lines(run_id) if archived else store.follow(run_id, stop=stop)
        for line, record in lines:
            # echo flushes, so a follower (or a pipe) sees each record as soon as it is known;
            # bytes go to the binary stream untouched.
            click.echo(line if as_json else timeline_line(record))
            for extra in traceback_lines(record) if verbose and not as_json else ():
                click.echo(extra)
            try:
                folded.apply(record)
            except EngineError:
                continue  # a journal that does not fold is still shown, and followed to its end
            ended = folded.ended and folded.todo is None
    except KeyboardInterrupt:
        return  # Ctrl-C is how `tail -f` ends: not an error
    except BrokenPipeError:
        _quiet_stdout()  # `ratchet tail ID | head`: the reader left; stop without noise
        return
    torn = 0 if archived else store.read(run_id).torn_bytes  # after what was printed: a writer may have appended
    if torn:
        click.echo(f"{store.where(run_id)}: {torn_note(torn)}", err=True)


def _quiet_stdout() -> None:
    # Python would otherwise complain when flushing the closed pipe at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
