"""A run's story for people: one entry per journal record, what it changed in the run's
data, and the idle gaps between records said in words ("waited 1 d 20 h for alice or bob").

The journal is folded record by record (`RunState.apply`, the engine's own replay), so
"what changed" is the difference of the run's data before and after each record, and a
gap is named after what the run was doing during it (waiting, backing off, escalated).
A journal that stops making sense as a run is still shown to its end, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from engine.errors import EngineError
from engine.run.replay import RunState
from engine.run.status import RunStatus
from journal.records import AnyRecord, Transition, record_type

GAP_S = 15 * 60  # a pause longer than this between two records gets its own line
VALUE_WIDTH = 300  # a data value longer than this is cut (the full journal has it all)

# What a record's colour says: retries, escalations, resolutions, people and endings stand out.
TONES = {
    "step_failed": "retry", "retry_scheduled": "retry", "step_abandoned": "retry",
    "timeout_fired": "timeout", "escalated": "escalation", "trigger_refused": "refused",
    "resolved": "resolution", "trigger_received": "person", "trigger_voted": "person", "cancelled": "cancel",
    "run_finished": "end", "upgraded": "person",
}


@dataclass(frozen=True)
class Change:
    """One key of the run's data that a record added, changed or removed (values as JSON text)."""

    key: str
    before: str | None
    after: str | None

    @property
    def kind(self) -> str:
        return "added" if self.before is None else "removed" if self.after is None else "changed"


@dataclass
class Entry:
    """One record as a line of the timeline."""

    seq: int
    ts: str
    kind: str
    state: str
    who: str
    detail: str
    tone: str
    changes: list[Change] = field(default_factory=list)
    gap: str | None = None  # the idle time before this record, in words
    proof: str = ""  # how `who` was proven (a decision's `via`, or "unverified"); "" when the record does not say


@dataclass
class Story:
    """The whole run: its entries, where it went, and where it stands."""

    run_id: str
    entries: list[Entry]
    run: RunState  # the fold after the last record shown
    taken: list[tuple[str, str, str]]  # (source, dest, trigger) of every transition, in order
    visited: list[str]  # states entered, first visit order
    trailing_gap: str | None = None  # the idle time from the last record to now, while the run has not ended
    problem: str | None = None  # why the fold stopped, if the journal stopped making sense


def tell(run_id: str, records: list[AnyRecord], *, now: datetime | None = None) -> Story:
    """The story of `records` (a journal, in order); `now` names the current idle time."""
    run = RunState()
    entries: list[Entry] = []
    taken: list[tuple[str, str, str]] = []
    visited: list[str] = []
    problem = None
    previous: datetime | None = None
    for record in records:
        moment = _moment(record.ts)
        gap = _gap(run, previous, moment) if problem is None else None
        before = dict(run.data)
        if problem is None:
            try:
                run.apply(record)
            except EngineError as exc:
                problem = str(exc)
        kind = record_type(record)
        if isinstance(record, Transition):
            taken.append((record.source, record.dest, record.trigger))
        if run.state and run.state not in visited:
            visited.append(run.state)
        entries.append(Entry(
            seq=record.seq, ts=record.ts, kind=kind,
            state=str(getattr(record, "state", "") or ""),
            who=str(getattr(record, "by", "") or ""),
            detail=_detail(kind, record), tone=TONES.get(kind, ""), proof=_proof(record),
            changes=_changes(before, run.data) if problem is None else [], gap=gap))
        previous = moment or previous
    trailing = None
    if now is not None and previous is not None and problem is None and not run.ended:
        trailing = _gap(run, previous, now, ongoing=True)
    return Story(run_id, entries, run, taken, visited, trailing, problem)


def span(seconds: float) -> str:
    """A span in its two largest units: `1 d 20 h`, `3 h 5 m`, `12 m`, `40 s`."""
    seconds = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
        if len(parts) == 2 or (parts and not seconds):
            break
    return " ".join(parts)


def when(moment: str | datetime | None) -> str:
    """A time as Ratchet shows it: UTC to the second, `2026-11-30 10:42:05Z`."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        try:
            return when(datetime.fromisoformat(moment))
        except ValueError:
            return moment
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _moment(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts)
    except ValueError:
        return None


def _gap(run: RunState, previous: datetime | None, moment: datetime | None, *, ongoing: bool = False) -> str | None:
    """The pause from `previous` to `moment` in words, named after what `run` was doing."""
    if previous is None or moment is None:
        return None
    seconds = (moment - previous).total_seconds()
    if seconds < GAP_S:
        return None
    length = span(seconds) + (" so far" if ongoing else "")
    if run.status == RunStatus.WAITING:
        whom = " or ".join(run.approvers) if run.approvers else "a trigger"
        return f"{'waiting' if ongoing else 'waited'} {length} for {whom} ({'|'.join(run.triggers)} in '{run.state}')"
    if run.status == RunStatus.RETRYING:
        return f"backing off {length} before attempt {run.retry_attempt} of '{run.state}'"
    if run.status == RunStatus.ESCALATED:
        return f"escalated for {length}, waiting for a person to resolve it"
    return f"nothing journaled for {length} in '{run.state}'"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[Change]:
    """What changed, key by key; a mapping that stays a non-empty mapping is compared inside
    (a join adds `review_clauses.3`, it does not rewrite all of `review_clauses`)."""
    changes: list[Change] = []
    for key, value in after.items():
        old = before.get(key)
        if key in before and old == value:
            continue
        if not prefix and isinstance(old, dict) and old and isinstance(value, dict):
            changes += _changes(old, value, f"{key}.")
        else:
            changes.append(Change(prefix + key, None if key not in before else _text(old), _text(value)))
    changes += [Change(prefix + key, _text(value), None) for key, value in before.items() if key not in after]
    return changes


def _detail(kind: str, r: Any) -> str:
    """What the record says beyond its time, kind, state and person (its data is in the changes)."""
    describe = _DETAILS.get(kind)
    return describe(r) if describe else ""


def _proof(r: Any) -> str:
    """How a decision's sender was proven, as `ratchet tail` shows it (README "Who decided")."""
    verified = getattr(r, "verified", None)  # None: a record that does not say (before people files)
    return "" if verified is None else (getattr(r, "via", None) or "verified") if verified else "unverified"


def _quote(text: str | None) -> str:
    return f" “{_text(text)}”" if text else ""


_DETAILS: dict[str, Any] = {
    "run_started": lambda r: f"{r.machine} v{r.version} ({r.definition_hash[:19]}…)",
    "step_started": lambda r: f"attempt {r.attempt}, key {r.idempotency_key}",
    "step_succeeded": lambda r: f"attempt {r.attempt} → {r.trigger}"
                                + (f" in {r.duration_ms:.0f} ms" if r.duration_ms is not None else ""),
    "step_failed": lambda r: f"attempt {r.attempt}: {_text(f'{r.error_type}: {r.error}' if r.error_type else r.error)}"
                             + ("" if r.retryable else " (not retryable)"),
    "step_abandoned": lambda r: f"attempt {r.attempt}: {_text(r.reason)}",
    "retry_scheduled": lambda r: f"attempt {r.attempt} due {when(r.due)} "
                                 f"(in {f'{r.delay_s:.3g} s' if r.delay_s < 60 else span(r.delay_s)})",
    "transition": lambda r: f"{r.source} → {r.dest} on {r.trigger}",
    "waiting": lambda r: f"for {'|'.join(r.triggers) or 'its children'}"
                         + (f" from {', '.join(r.approvers)}" if r.approvers else "")
                         + (f" until {when(r.deadline)}" if r.deadline else ", no deadline"),
    "trigger_received": lambda r: f"{r.trigger}" + (f": quorum met ({', '.join(r.votes)})" if r.votes else "")
                                  + _quote(r.comment),
    "trigger_voted": lambda r: f"{r.trigger}: {r.count} of {r.needed}{_quote(r.comment)}",
    "trigger_refused": lambda r: f"{r.trigger} refused: {_text(r.reason)}",
    "timeout_fired": lambda r: f"deadline {when(r.deadline)} passed",
    "escalated": lambda r: f"{_text(r.reason)}" + (f": {_text(r.detail)}" if r.detail else ""),
    "resolved": lambda r: f"{r.action}" + (f" → {r.trigger}" if r.trigger else "") + _quote(r.comment),
    "run_finished": lambda r: f"outcome {r.outcome}" if r.outcome else "",
    "cancelled": lambda r: _text(r.reason) + (f"; cut off {r.cut_step.state} attempt {r.cut_step.attempt}"
                                                + (" (outcome unknown)" if r.cut_step.outcome_unknown else "")
                                                if r.cut_step else ""),
    "compensation_started": lambda r: f"on_cancel {r.action}, attempt {r.attempt}",
    "compensation_finished": lambda r: f"on_cancel {r.action}: "
                                       + (f"failed: {_text(r.error)}" if r.error is not None else "done"),
    "spawned": lambda r: f"started {', '.join(c.run_id for c in r.children)} ({len(r.children)} of {r.total})",
    "child_finished": lambda r: f"{r.child} {r.status}" + (f" → {r.outcome}" if r.outcome else ""),
    "sealed": lambda r: f"through #{r.through} (key {r.key})",
    "upgraded": lambda r: f"to v{r.version} ({r.definition_hash[:19]}…){_quote(r.comment)}",
}
