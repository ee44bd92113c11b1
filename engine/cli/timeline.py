"""One readable line per journal record: what `ratchet tail` and `ratchet run` print.

Also the one way the CLI shows a time (`when`: UTC to the second, `2026-11-30 10:42:05Z`,
in `run`, `tail` and `status` alike; `--json` keeps the journal's ISO 8601) and a
span of time (`span`: `3 h`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import msgspec

from journal.records import AnyRecord, record_type

DETAIL_WIDTH = 100  # data dicts and long texts are cut here: the line stays one line


def timeline_line(record: AnyRecord) -> str:
    """`2026-11-27 09:41:03Z  #5  step_failed      draft  attempt 2  Error: 503 (120 ms)`."""
    kind = record_type(record)
    describe = _DESCRIBE.get(kind)
    detail = describe(record) if describe else ""
    return f"{when(record.ts)}  {('#' + str(record.seq)).ljust(3)} {kind:<16} {_clean(detail)}".rstrip()


def traceback_lines(record: AnyRecord) -> list[str]:
    """A failed step's traceback, indented under its line (`tail --verbose`, `--debug run`)."""
    trace = getattr(record, "traceback", "") if record_type(record) == "step_failed" else ""
    return [f"    {_clean(line)}" for line in trace.splitlines()]


def when(moment: str | datetime) -> str:
    """A time as the CLI shows it: UTC, to the second, `2026-11-30 10:42:05Z`."""
    if isinstance(moment, str):
        try:
            return when(datetime.fromisoformat(moment))
        except ValueError:
            return _clean(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def span(seconds: float) -> str:
    """A span of time in its largest whole unit: `40 s`, `12 m`, `3 h`, `2 d` (rounded down)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _place(where: str) -> str:
    """`file:line`, relative to the current folder when the file is under it."""
    if not where:
        return ""
    path, _, line = where.rpartition(":")
    relative = os.path.relpath(path) if os.path.isabs(path) else path
    return f"  at {relative if not relative.startswith('..') else path}:{line}"


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


def _who(r: Any) -> str:
    """`  by alice [signature]`: who decided, and how that was proven (README "Who decided")."""
    proof = {True: f" [{r.via}]", False: " [unverified]"}.get(r.verified, "")  # None: before people files
    return _by(r.by) + proof


def _data(data: dict[str, Any]) -> str:
    return f"  {_short(data)}" if data else ""


def _note(text: str | None) -> str:
    return f"  “{_short(text)}”" if text else ""


_DESCRIBE = {
    "run_started": lambda r: (f"{r.machine} v{r.version}  run {r.run_id}{_by(r.by)}"
                              f"{f'  child of {r.parent} ({r.parent_state})' if r.parent else ''}{_data(r.input)}"),
    "step_started": lambda r: f"{r.state}  attempt {r.attempt}  key {r.idempotency_key}",
    "step_succeeded": lambda r: f"{r.state}  attempt {r.attempt}  → {r.trigger}{_data(r.data)}{_ms(r.duration_ms)}",
    "step_failed": lambda r: (
        f"{r.state}  attempt {r.attempt}  "
        f"{_short(f'{r.error_type}: {r.error}' if r.error_type else r.error)}{_place(r.where)}{_ms(r.duration_ms)}"
        f"{'' if r.retryable else '  not retryable'}"
    ),
    "step_abandoned": lambda r: f"{r.state}  attempt {r.attempt}  {_short(r.reason)}",
    "retry_scheduled": lambda r: f"{r.state}  attempt {r.attempt}  due {when(r.due)} (in {r.delay_s:g} s)",
    "transition": lambda r: f"{r.source} → {r.dest}  on {r.trigger}",
    "waiting": lambda r: (
        f"{r.state}  for {'|'.join(r.triggers) or 'its children'}"
        f"{'  approvers ' + ', '.join(r.approvers) if r.approvers else ''}"
        f"  {'until ' + when(r.deadline) if r.deadline else 'no deadline'}"
    ),
    "trigger_received": lambda r: (
        f"{r.state}  {r.trigger}{_who(r)}{_note(r.comment)}{_data(r.data)}"
        f"{'  quorum met: ' + ', '.join(r.votes) if r.votes else ''}"
    ),
    "trigger_voted": lambda r: (
        f"{r.state}  {r.trigger}{_who(r)}  {r.count} of {r.needed}{_note(r.comment)}{_data(r.data)}"
    ),
    "trigger_refused": lambda r: f"{r.state}  {r.trigger}{_who(r)}  refused: {_short(r.reason)}",
    "timeout_fired": lambda r: f"{r.state}  deadline {when(r.deadline)} passed",
    "escalated": lambda r: (
        f"{r.state}  {_short(r.reason)}{'  ' + _short(r.detail) if r.detail else ''}"
        f"{'  ticket ' + r.ticket if r.ticket else ''}"
    ),
    "resolved": lambda r: f"{r.action}{' → ' + r.trigger if r.trigger else ''}{_who(r)}{_note(r.comment)}",
    "run_finished": lambda r: f"{r.state}{'  outcome ' + r.outcome if r.outcome else ''}",
    "cancelled": lambda r: f"{_who(r).strip()}{_note(r.reason)}{_cut(r.cut_step)}",
    "compensation_started": lambda r: f"on_cancel {r.action}  attempt {r.attempt}  key {r.idempotency_key}",
    "compensation_finished": lambda r: (
        f"on_cancel {r.action}  attempt {r.attempt}  "
        f"{'failed: ' + _short(f'{r.error_type}: {r.error}') if r.error is not None else 'done'}{_ms(r.duration_ms)}"
    ),
    "sealed": lambda r: f"through #{r.through}  key {r.key}",
    "spawned": lambda r: f"{r.state}  started {_children(r.children)} ({len(r.children)} of {r.total})",
    "child_finished": lambda r: (
        f"{r.state}  {r.child} {r.status}{' → ' + r.outcome if r.outcome else ''}{_data(r.data)}"
    ),
    "upgraded": lambda r: (
        f"v{r.version} {r.definition_hash[:19]}…  (was {r.from_hash[:19]}…){_who(r)}{_note(r.comment)}"
    ),
}


def _children(children: list[Any]) -> str:
    """All of them up to four; else the first three, `…` and the last."""
    ids = [child.run_id for child in children]
    return ", ".join(ids if len(ids) <= 4 else [*ids[:3], "…", ids[-1]])


def _cut(step: Any) -> str:
    if step is None:
        return ""
    what = "outcome unknown" if step.outcome_unknown else "abandoned"
    return f"  cut off {step.state} attempt {step.attempt} (key {step.idempotency_key}): {what}"
