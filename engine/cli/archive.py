"""`ratchet archive`: retire finished journals from runs/ to archive/, verified and compressed.

Which runs: those that ended (finished or cancelled) and whose last record is older than
the age given, measured on the engine's clock (RATCHET_CLOCK_FILE in tests). Each is
verified first (structure, seq, hash chain) and archived only as verified: the store
holds the run's writer while it moves it and refuses if the journal changed since. The
moves are the store's (journal.store.Store.archive): crash-safe, so a crash leaves a run
in runs/ or, for a moment, in both runs/ and archive/, which the next archive finishes
whatever the run's age. Supervisors never look at archive/; `tail`, `verify` and
`status --all` read it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from engine.cli.app import existing_home, main
from engine.cli.progress import progress

if TYPE_CHECKING:
    from journal import Store


def _age(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from engine.definition.durations import parse_duration  # lazy: keeps `ratchet --help` fast

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


@main.command()
@click.option("--finished-before", "age", required=True, callback=_age, metavar="AGE",
              help="Archive runs that ended and whose last record is older than AGE (e.g. 30d, 12h).")
@click.option("--dry-run", is_flag=True, help="Only say which runs would be archived.")
@click.pass_context
def archive(ctx: click.Context, age: float, dry_run: bool) -> None:
    """Move finished runs' journals to HOME/archive/, compressed.

    A run is archived once it has ended (finished or cancelled) and its last
    record is older than AGE; runs that have not ended are never touched. Each
    journal is verified first: a damaged one stays in runs/ and is reported
    (exit 1). Archived runs are read by `tail ID`, `verify ID`, `verify --all`
    and `status --all`; supervisors no longer see them. Prints one line per
    run archived (or, with --dry-run, that would be), then a summary on stderr.
    A run a crash left in both runs/ and archive/ is said and finished.

    \b
    Example:
      ratchet archive --finished-before 30d --dry-run
      ratchet archive --finished-before 30d
    """
    from engine.home import Home
    from engine.run.clock import clock_from_env

    store = Home(existing_home(ctx)).store
    cutoff = clock_from_env().now() - timedelta(seconds=age)
    archived = set(store.archived_ids())
    counts = {"archived": 0, "live": 0, "recent": 0, "failed": 0}
    run_ids = store.run_ids()
    with progress("archive", len(run_ids)) as shown:  # on a terminal only (stderr)
        for run_id in run_ids:
            shown.advance(run_id)
            outcome = _retire(store, run_id, cutoff, both=run_id in archived, dry_run=dry_run, say=shown.echo)
            counts[outcome] += 1
    verb = "would archive" if dry_run else "archived"
    click.echo(f"{verb} {counts['archived']} runs; left in runs/: {counts['live']} not ended, "
               f"{counts['recent']} ended since {cutoff:%Y-%m-%d %H:%M}Z, {counts['failed']} not archivable",
               err=True)
    if counts["failed"]:
        ctx.exit(1)


def _retire(store: Store, run_id: str, cutoff: datetime, *, both: bool, dry_run: bool,
            say: Callable[[str], None] = click.echo) -> str:
    """Archive one run if it is due: "archived", "live", "recent" or "failed" (said why, by `say`)."""
    from engine.faults import crash_point
    from engine.run.clock import parse_iso
    from engine.run.replay import fold
    from journal import JournalError, JournalLockedError

    try:
        records = store.read(run_id).records
        rs = fold(records)
    except Exception as exc:  # a journal that cannot be read or folded: said, left where it is
        say(f"{run_id}: not archived: cannot read it ({exc}); run 'ratchet verify {run_id}'")
        return "failed"
    if both:
        say(f"{run_id}: in both runs/ and archive/ (an archive cut short by a crash)")
    if not rs.ended or rs.todo is not None:  # a cancelled run may still owe its on_cancel
        return "live"
    if rs.parent is not None and _awaited(store, rs.parent, run_id):
        say(f"{run_id}: not archived yet: its parent {rs.parent} has not journaled its end (`ratchet supervise` "
            "does, then archive it)")
        return "live"
    if not both and parse_iso(records[-1].ts) > cutoff:
        return "recent"
    result = store.verify(run_id)
    if not result.ok:
        say(f"{run_id}: not archived: {result}")
        return "failed"
    if dry_run:
        say(f"{run_id}: would archive ({rs.status} in '{rs.state}', {result.records} records)")
        return "archived"
    try:
        where = store.archive(run_id, head=result.last_hash, on_step=crash_point)
    except JournalLockedError:
        say(f"{run_id}: not archived now: another process holds it; try again later")
        return "live"
    except JournalError as exc:
        say(f"{run_id}: not archived: {exc}")
        return "failed"
    say(f"{run_id}: archived ({rs.status} in '{rs.state}', {result.records} records) to {where}")
    return "archived"


def _awaited(store: Store, parent: str, child: str) -> bool:
    """Does `parent` still count `child` live? It reads the child's journal at its next
    session to journal `child_finished` (engine.run.children): archived, it would wait for ever."""
    from engine.run.replay import fold
    from journal import JournalError

    try:
        rs = fold(store.read(parent).records)
    except JournalError:
        return False  # gone (archived) or damaged: nobody will read the child from runs/
    brood = rs.brood
    return not rs.ended and brood is not None and brood.state == rs.state and child in brood.live
