"""Commands that read journals for an audit: `ratchet verify` and `ratchet tail`.

Both only read: they take no lock and never change a journal, so they are safe on a
run that is being advanced right now. Both read archived runs too (`ratchet archive`):
a run id is looked up in runs/ first, then in the archive.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from engine.cli.app import existing_home, main, require_run
from engine.cli.progress import progress
from engine.cli.timeline import timeline_line, traceback_lines
from journal import Store, check_run_id
from journal.verify import torn_note


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
@click.pass_context
def verify(ctx: click.Context, run_ids: tuple[str, ...], everything: bool) -> None:
    """Check journals: record structure, seq continuity, hash chain.

    Checks the runs given (archived ones too), or every run in HOME/runs (and,
    with --all, every archived run). An ID that is a .jsonl file is a
    journal file, e.g. one written by `ratchet export`. Prints one line per journal,
    `ID: ok (N records)` or `PATH:LINE: problem`, and exits 1 if any journal
    is damaged.

    A torn tail (a last line without its newline) is reported but does not
    fail: it is what a crash mid-write leaves (or a write in progress on a live
    run), the record never counted, and the next writer cuts it off. Failing
    on it would call every crash tampering.

    \b
    Example:
      ratchet verify
      ratchet verify 01JD8X3K renewal-acme
    """
    files = [arg for arg in run_ids if arg.endswith(".jsonl") and os.path.isfile(arg)]  # `ratchet export`ed
    bad_files = sum(not _verify_file(Path(arg)) for arg in files)
    run_ids = tuple(arg for arg in run_ids if arg not in files)
    if files and not run_ids:
        ctx.exit(1 if bad_files else 0)
    store = _store(ctx)
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
                result = store.verify_archived(run_id) if archived else store.verify(run_id)
            except OSError as exc:
                shown.echo(f"{store.where(run_id)}: cannot read ({exc.strerror or exc})")
                bad += 1
                continue
            shown.echo(str(result) if not result.ok else f"{run_id}{' (archived)' if archived else ''}: {result}")
            bad += not result.ok
    if bad or bad_files:
        ctx.exit(1)


def _verify_file(path: Path) -> bool:
    """Verify one journal file given by its path; says the verdict; True if it is sound."""
    from journal import verify as verify_journal

    try:
        result = verify_journal(path)
    except OSError as exc:
        click.echo(f"{path}: cannot read ({exc.strerror or exc})")
        return False
    click.echo(str(result) if not result.ok else f"{path}: {result}")
    return result.ok


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
