"""Commands that keep runs moving and show them: `ratchet supervise` and `ratchet status`."""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import TYPE_CHECKING

import click

from engine.cli.app import UserError, existing_home, main, require_run
from engine.cli.timeline import span, when
from engine.run.status import RunStatus

if TYPE_CHECKING:
    from pathlib import Path

    from engine.supervise.metrics import Metrics
    from engine.supervise.status import StatusRow


@main.command()
@click.option("--once", is_flag=True, help="Do everything due now, then exit (for cron and tests).")
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Worker processes that run actions (one run each at a time).")
@click.option("--rescan", type=click.FloatRange(0.1, 3600), default=5.0, show_default=True,
              metavar="SECONDS", help="Rescan of inbox/ and check of the file watches (covers missed "
                   "file events; journals are rescanned in full when a watch died or overflowed, "
                   "else every 5 minutes).")
@click.option("--grace", type=click.FloatRange(0, 3600), default=10.0, show_default=True,
              metavar="SECONDS", help="On SIGTERM/SIGINT, how long in-flight steps may finish (no new one starts) "
                   "before they are killed.")
@click.option("--job-timeout", type=click.FloatRange(1, 86400), default=300.0, show_default=True,
              metavar="SECONDS", help="Limit for a job with no step in flight (e.g. a hung on_escalate): "
                                      "its worker is killed and the run retried later.")
@click.option("--quiet", is_flag=True, help="Log warnings and errors only.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve Prometheus metrics on http://HOST:PORT/metrics (0: any free port, logged). "
                   "Needs prometheus-client: pip install 'ratchet[metrics]'.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="The address --metrics-port binds (0.0.0.0: every interface).")
@click.option("--message-retention", metavar="DURATION",
              help="PostgreSQL: how long a settled message row (delivered or refused) is kept before "
                   "supervisors delete it (default: $RATCHET_MESSAGE_RETENTION, else 7d; 0s: not kept). "
                   "Queued rows are never deleted.")
@click.pass_context
def supervise(ctx: click.Context, once: bool, workers: int, rescan: float, grace: float,
              job_timeout: float, quiet: bool, metrics_port: int | None, metrics_host: str,
              message_retention: str | None) -> None:
    """Drive every run: resume, apply the inbox, fire deadlines.

    HOME must exist (`ratchet start` or `ratchet run` creates it): a mistyped
    --home is refused, never supervised empty. Logs one line per event on stderr,
    the first naming the home.

    On start it reads every journal and resumes what should be moving. It watches
    HOME/inbox for trigger files (applied ones go to inbox/done/, refused ones to
    inbox/rejected/ beside NAME.error.txt) and runs actions in worker processes,
    killing and replacing a worker whose step exceeds its state's timeout,
    counted from the step's start or its action's last ctx.heartbeat(),
    whichever is later.

    SIGTERM or SIGINT (Ctrl-C) stops it gracefully: it starts no new step,
    lets the steps in flight finish within --grace seconds and journals their
    outcomes, then exits 0. A step still running past the grace, or at a second
    signal (which stops at once, exit 128+N: 130 after Ctrl-C), is killed: a
    crash for its run, which the next start replays (a non-idempotent step cut
    off is escalated "unknown outcome"). Under systemd, set TimeoutStopSec
    above --grace (README, "Deploying").
    Several supervisors may share a home: a run is advanced by one at a time,
    and how often one found a run locked by another is said at stop (each time
    at debug level: `ratchet --debug supervise`).

    --metrics-port serves Prometheus metrics (README, "Metrics"): runs by
    status, waits and escalations, steps, retries, latencies, inbox files,
    worker restarts.

    \b
    Example:
      ratchet supervise --workers 4
      ratchet supervise --once        # from cron
      ratchet supervise --metrics-port 9464
    """
    from engine.cli import supervising  # lazy: keeps `ratchet --help` fast; the console script's start too
    from engine.supervise.retention import retention_seconds

    keep = retention_seconds(message_retention)  # a bad value (option or environment) is refused first
    home = existing_home(ctx)
    metrics = functools.partial(_metrics, metrics_host, metrics_port) if metrics_port is not None else None
    ctx.exit(supervising.supervise(home, debug=bool(ctx.find_root().obj.get("debug")), once=once, workers=workers,
                                   rescan=rescan, grace=grace, job_timeout=job_timeout, quiet=quiet, metrics=metrics,
                                   retention=keep if message_retention is not None else None))


def _metrics(host: str, port: int) -> Metrics:
    """The supervisor's metrics, served on host:port (prometheus-client imported only now)."""
    from engine.run.clock import clock_from_env

    try:
        from engine.supervise.metrics import Metrics
    except ImportError as exc:
        raise UserError(f"--metrics-port needs prometheus-client ({exc}); "
                        "install it with: pip install 'ratchet[metrics]'") from exc
    metrics = Metrics(clock_from_env())
    try:
        bound_host, bound_port = metrics.serve(host, port)
    except OSError as exc:
        raise UserError(f"--metrics-port {port}: cannot serve on {host}:{port} ({exc.strerror or exc}); "
                        "choose another port or --metrics-host") from exc
    logging.getLogger("ratchet.supervisor").info("metrics on http://%s:%d/metrics", bound_host, bound_port)
    return metrics


# --status words: a run's own status, what a journal can be instead, and two states of fact.
STATUS_WORDS = (*RunStatus, "damaged", "starting", "stalled", "overdue")
COLUMNS = ("RUN", "MACHINE", "STATE", "STATUS", "WAITING ON", "DEADLINE", "ATTEMPT", "ESCALATION")


@main.command()
@click.argument("run_id", required=False, metavar="[ID]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (a list of runs).")
@click.option("--state", "state_filter", metavar="STATE", help="Only runs in this state.")
@click.option("--status", "status_filter", type=click.Choice(STATUS_WORDS), metavar="STATUS",
              help=f"Only runs with this status ({', '.join(STATUS_WORDS)}).")
@click.option("--machine", "machine_filter", metavar="NAME", help="Only runs of this machine.")
@click.option("--all", "everything", is_flag=True, help="Also the archived runs (`ratchet archive`).")
@click.option("--tree", is_flag=True, help="Each run's children (fan-out) indented under it.")
@click.pass_context
def status(ctx: click.Context, run_id: str | None, as_json: bool, state_filter: str | None,
           status_filter: str | None, machine_filter: str | None, everything: bool, tree: bool) -> None:
    """Show runs: state, waiting on whom, deadlines, escalations.

    A table by default, one row per run (or only run ID); --json prints one
    JSON list for scripts. Filters combine. Read-only: safe while a supervisor
    runs. A run it cannot read is listed with the error instead of hidden.
    Archived runs are shown with --all (or when asked for by ID).

    \b
    STATUS says what is true now, not only what the journal last said:
      running (in flight)   a process holds the run and is moving it
      stalled (no worker)   it should be moving, but no process holds it
      waiting (overdue by 3 h)   its deadline passed; no supervisor fired it
      retry 3/5 at TIME     sleeping before attempt 3 of 5
      [code changed]        a module its definition names changed since it started

    \b
    Example:
      ratchet status
      ratchet status --status escalated
      ratchet status --machine invoice --state charge
      ratchet status renewal-acme --json | jq '.[0].deadline'
      ratchet status --tree                  # parents with their child runs
    """
    from engine.home import Home
    from engine.supervise.status import archived_rows, has_status, status_rows

    home = Home(existing_home(ctx))
    archived = home.store.archived_ids() if everything or run_id is not None else []
    if run_id is not None and run_id in archived and not home.store.exists(run_id):
        rows = archived_rows(home, [run_id])
    else:
        if run_id is not None:
            require_run(home.store, run_id)
        rows = status_rows(home, [run_id] if run_id else None)
        if everything and run_id is None:
            live = {r.run_id for r in rows}
            for both in sorted(live.intersection(archived)):
                click.echo(f"ratchet: warning: run {both} is in both runs/ and archive/ (an archive cut short "
                           "by a crash); 'ratchet archive' finishes it", err=True)
            rows = sorted(rows + archived_rows(home, [i for i in archived if i not in live]), key=lambda r: r.run_id)
    rows = [r for r in rows if (not state_filter or r.state == state_filter)
            and (not status_filter or has_status(r, status_filter))
            and (not machine_filter or r.machine == machine_filter)]
    if as_json:
        ordered = _as_tree(rows)[0] if tree else rows  # each parent, then its children (`parent` says whose)
        click.echo(json.dumps([r.to_dict() for r in ordered], indent=2))
        return
    if not rows:
        filtered = state_filter or status_filter or machine_filter
        click.echo("no runs match the filters" if filtered else f"no runs in {home.store.location}", err=True)
        return
    depth = {r.run_id: 0 for r in rows}
    if tree:
        rows, depth = _as_tree(rows)
    table = [COLUMNS] + [_cells(r, depth.get(r.run_id, 0)) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    _say_who_is_verified(home.root)


def _say_who_is_verified(root: Path) -> None:
    """An open home (no people.yaml) takes every sender at their word: say so, on stderr."""
    from engine.trust.people import PeopleFileError, load_people

    try:
        if load_people(root) is None:
            click.echo("note: open home (no people.yaml): senders are not verified and decisions are journaled "
                       "with \"verified\": false; see README 'Who decided'", err=True)
    except PeopleFileError as exc:
        click.echo(f"ratchet: warning: {str(exc).splitlines()[0]} (until fixed, every inbox file is refused)",
                   err=True)


def _cells(row: StatusRow, depth: int = 0) -> tuple[str, ...]:
    waiting = ""
    if row.waiting_on is not None:
        waiting = "|".join(row.waiting_on) + (f" by {','.join(row.approvers)}" if row.approvers else "")
        for trigger, needed in (row.quorum or {}).items():  # "approve 1 of 2 (alice)"
            who = (row.votes or {}).get(trigger, [])
            waiting += f"; {trigger} {len(who)} of {needed}" + (f" ({', '.join(who)})" if who else "")
    if row.children is not None:
        waiting = f"children: {row.children}" + (f"; or {waiting}" if waiting else "")
    if row.queued:  # "approve by alice,bob; queued 3 s: approve by alice"
        from engine.supervise.queued import said

        waiting = "; ".join(filter(None, [waiting, said(row.queued, span)]))
    escalation = row.error or (f"{row.escalation}: {row.escalation_detail}" if row.escalation_detail
                               else row.escalation or "")
    if row.children_escalated and not escalation:
        escalation = "child " + "; child ".join(row.children_escalated)
    run = ("  " * (depth - 1) + "└ " if depth else "") + row.run_id
    deadline = when(row.deadline) if row.deadline else ("forever" if row.status == RunStatus.WAITING else "")
    return (run, row.machine, row.state, status_text(row) + (" (archived)" if row.archived else ""),
            waiting, deadline,
            str(row.attempt or ""), escalation if len(escalation) <= 80 else escalation[:79] + "…")


def status_text(row: StatusRow) -> str:
    """The STATUS cell: the run's status, said as it stands now (see `ratchet status --help`)."""
    text = str(row.status)
    late = f"overdue by {span(row.overdue_s)}" if row.overdue_s else ""
    if row.owes:
        text = f"{row.status} ({row.owes} {'in flight' if row.held else 'owed, no worker'})"
    elif row.stalled:
        text = "stalled (no worker)"
    elif row.status == RunStatus.RUNNING and row.held:
        text = "running (in flight)"
    elif row.status == RunStatus.WAITING and late:
        text = f"waiting ({late})"
    elif row.status == RunStatus.RETRYING and row.retry_attempt:
        of = f"/{row.retry_attempts}" if row.retry_attempts else ""
        text = f"retry {row.retry_attempt}{of} at {when(row.deadline) if row.deadline else '?'}"
        text += f" ({late})" if late else ""
    return text + (" [code changed]" if row.code_changed else "")


def _as_tree(rows: list[StatusRow]) -> tuple[list[StatusRow], dict[str, int]]:
    """The rows in tree order (a parent, then its children depth-first, in their natural
    order: c.2 before c.10) and each row's depth. A child whose parent is not listed is a root."""
    listed = {row.run_id for row in rows}
    children: dict[str | None, list[StatusRow]] = {}
    for row in rows:
        parent = row.parent if row.parent in listed else None
        children.setdefault(parent, []).append(row)
    ordered: list[StatusRow] = []
    depth: dict[str, int] = {}
    stack = [(row, 0) for row in reversed(sorted(children.get(None, []), key=_natural))]
    while stack:
        row, level = stack.pop()
        if row.run_id in depth:
            continue  # a cycle in damaged journals: show each run once
        ordered.append(row)
        depth[row.run_id] = level
        stack.extend((child, level + 1) for child in reversed(sorted(children.get(row.run_id, []), key=_natural)))
    return ordered, depth


def _natural(row: StatusRow) -> list[tuple[int, str]]:
    return [(0, part) if not part.isdigit() else (1, f"{int(part):012d}") for part in re.split(r"(\d+)", row.run_id)]
