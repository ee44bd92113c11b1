"""Commands that read journals for an audit: `ratchet verify` and `ratchet tail`.

Both only read: they take no lock and never change a journal, so they are safe on a
run that is being advanced right now.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
import msgspec

from engine.cli.app import UserError, existing_home, main
from journal import FileStore, follow_lines
from journal.records import AnyRecord
from journal.verify import torn_note, verify as verify_journal

DETAIL_WIDTH = 100  # data dicts and long texts are cut here: the line stays one line


def _store(ctx: click.Context) -> FileStore:
    return FileStore(existing_home(ctx) / "runs")


def _existing_path(store: FileStore, run_id: str) -> Path:
    path = store.path(run_id)  # raises InvalidRunIdError (a user error) for a bad id
    if not path.is_file():
        raise UserError(f"no run '{run_id}' in {store.runs_dir}; see 'ratchet status'")
    return path


@main.command()
@click.argument("run_ids", nargs=-1, metavar="[ID]...")
@click.pass_context
def verify(ctx: click.Context, run_ids: tuple[str, ...]) -> None:
    """Check journals: record structure, seq continuity, hash chain.

    Checks the runs given, or every run in HOME/runs. Prints one line per
    journal, `ID: ok (N records)` or `PATH:LINE: problem`, and exits 1 if
    any journal is damaged.

    A torn tail (a last line without its newline) is reported but does not
    fail: it is what a crash mid-write leaves (or a write in progress on a live
    run), the record never counted, and the next writer cuts it off. Failing
    on it would call every crash tampering.

    \b
    Example:
      ratchet verify
      ratchet verify 01JD8X3K renewal-acme
    """
    store = _store(ctx)
    if run_ids:
        paths = [(run_id, _existing_path(store, run_id)) for run_id in run_ids]
    else:
        paths = [(run_id, store.path(run_id)) for run_id in store.run_ids()]
        if not paths:
            click.echo(f"no journals in {store.runs_dir}", err=True)
    bad = 0
    for run_id, path in paths:
        try:
            result = verify_journal(path, run_id=run_id)
        except OSError as exc:
            click.echo(f"{path}: cannot read ({exc.strerror or exc})")
            bad += 1
            continue
        click.echo(str(result) if not result.ok else f"{run_id}: {result}")
        bad += not result.ok
    if bad:
        ctx.exit(1)


@main.command()
@click.argument("run_id", metavar="ID")
@click.option("-f", "--follow", "live", is_flag=True, help="Keep printing records as they are appended, until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print the journal lines themselves (exact bytes), for jq.")
@click.pass_context
def tail(ctx: click.Context, run_id: str, live: bool, as_json: bool) -> None:
    """Print a run's journal as a readable timeline.

    One line per record.
    Each line shows the time (UTC), the record's seq, what happened, the
    state, the attempt, who did it, state changes and durations. A torn
    tail (a crash mid-write) is noted on stderr.

    \b
    Example:
      ratchet tail renewal-acme
      ratchet tail renewal-acme -f
      ratchet tail renewal-acme --json | jq -c 'select(.type=="step_failed")'
    """
    path = _existing_path(_store(ctx), run_id)
    consumed = 0
    try:
        for line, record in follow_lines(path, stop=None if live else (lambda: True)):
            # echo flushes, so a follower (or a pipe) sees each record as soon as it is known;
            # bytes go to the binary stream untouched.
            click.echo(line if as_json else timeline_line(record))
            consumed += len(line) + 1
    except KeyboardInterrupt:
        return  # Ctrl-C is how `tail -f` ends: not an error
    except BrokenPipeError:
        _quiet_stdout()  # `ratchet tail ID | head`: the reader left; stop without noise
        return
    with open(path, "rb") as f:
        f.seek(consumed)
        rest = f.read()
    if rest and b"\n" not in rest:  # a newline means a live writer appended since: not torn
        click.echo(f"{path}: {torn_note(len(rest))}", err=True)


def _quiet_stdout() -> None:
    # Python would otherwise complain when flushing the closed pipe at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def timeline_line(record: AnyRecord) -> str:
    """`2026-11-27 09:41:03Z  #5  step_failed      draft  attempt 2  Error: 503 (120 ms)`."""
    kind = type(record).__struct_config__.tag  # type: ignore[attr-defined]
    describe = _DESCRIBE.get(kind)
    detail = describe(record) if describe else ""
    return f"{_when(record.ts)}  {('#' + str(record.seq)).ljust(3)} {kind:<16} {_clean(detail)}".rstrip()


def _when(ts: str) -> str:
    try:
        moment = datetime.fromisoformat(ts).astimezone(timezone.utc)
    except ValueError:
        return _clean(ts)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _clean(text: str) -> str:
    # Journal data is whatever actions returned: never let it move the terminal's cursor.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short(value: object) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= DETAIL_WIDTH else text[: DETAIL_WIDTH - 1] + "…"


def _ms(duration_ms: float | None) -> str:
    return "" if duration_ms is None else f" ({duration_ms:.0f} ms)"


def _by(by: str | None) -> str:
    return f"  by {by}" if by else ""


def _data(data: dict) -> str:
    return f"  {_short(data)}" if data else ""


def _note(text: str | None) -> str:
    return f"  “{_short(text)}”" if text else ""


_DESCRIBE = {
    "run_started": lambda r: f"{r.machine} v{r.version}  run {r.run_id}{_by(r.by)}{_data(r.input)}",
    "step_started": lambda r: f"{r.state}  attempt {r.attempt}  key {r.idempotency_key}",
    "step_succeeded": lambda r: f"{r.state}  attempt {r.attempt}  → {r.trigger}{_data(r.data)}{_ms(r.duration_ms)}",
    "step_failed": lambda r: (
        f"{r.state}  attempt {r.attempt}  "
        f"{_short(f'{r.error_type}: {r.error}' if r.error_type else r.error)}{_ms(r.duration_ms)}"
        f"{'' if r.retryable else '  not retryable'}"
    ),
    "step_abandoned": lambda r: f"{r.state}  attempt {r.attempt}  {_short(r.reason)}",
    "retry_scheduled": lambda r: f"{r.state}  attempt {r.attempt}  due {_when(r.due)} (in {r.delay_s:g} s)",
    "transition": lambda r: f"{r.source} → {r.dest}  on {r.trigger}",
    "waiting": lambda r: (
        f"{r.state}  for {'|'.join(r.triggers)}"
        f"{'  approvers ' + ', '.join(r.approvers) if r.approvers else ''}"
        f"  {'until ' + _when(r.deadline) if r.deadline else 'no deadline'}"
    ),
    "trigger_received": lambda r: f"{r.state}  {r.trigger}{_by(r.by)}{_note(r.comment)}{_data(r.data)}",
    "trigger_refused": lambda r: f"{r.state}  {r.trigger}{_by(r.by)}  refused: {_short(r.reason)}",
    "timeout_fired": lambda r: f"{r.state}  deadline {_when(r.deadline)} passed",
    "escalated": lambda r: (
        f"{r.state}  {_short(r.reason)}{'  ' + _short(r.detail) if r.detail else ''}"
        f"{'  ticket ' + r.ticket if r.ticket else ''}"
    ),
    "resolved": lambda r: f"{r.action}{' → ' + r.trigger if r.trigger else ''}{_by(r.by)}{_note(r.comment)}",
    "run_finished": lambda r: f"{r.state}{'  outcome ' + r.outcome if r.outcome else ''}",
    "cancelled": lambda r: f"{_by(r.by).strip()}{_note(r.reason)}",
}
