"""Check a whole journal: record structure, seq continuity and the hash chain.

`verify` reads every line and stops at the first problem, naming its line. A torn last
line (no trailing newline) is not a problem: it is what a crash mid-write leaves, it
never counted, and the next writer cuts it off. It is reported in `torn_bytes`, apart
from damage, so a crash is never mistaken for tampering (nor the reverse).

What the chain proves: every line but the last is exactly what was written after the
first line, given the last. Editing the last line, or cutting whole lines off the end,
leaves a valid chain; pass `head` (the last hash, kept somewhere else) to catch that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from journal.records import (
    FORMAT,
    GENESIS,
    AnyRecord,
    Cancelled,
    CompensationFinished,
    RunFinished,
    RunStarted,
    Upgraded,
    decode,
    hash_definition,
    record_type,
)


@dataclass(frozen=True)
class VerifyResult:
    """The verdict on one journal. `line`/`problem` name the first problem, if any."""

    path: Path | str  # a file, or a store's location of the journal (`postgresql://…/runs/ID`)
    ok: bool
    records: int  # complete, valid records (before the problem, if any)
    line: int | None = None
    problem: str | None = None
    torn_bytes: int = 0  # bytes after the last newline: a crash mid-write, not damage
    last_hash: str = GENESIS  # hash of the last valid line: the chain's head, to anchor

    @property
    def torn(self) -> bool:
        return self.torn_bytes > 0

    def __str__(self) -> str:
        if not self.ok:
            return f"{self.path}:{self.line}: {self.problem}"
        text = f"ok ({self.records} records)"
        if self.torn:
            text += f"; {torn_note(self.torn_bytes)}"
        return text


def torn_note(size: int) -> str:
    return f"torn tail ({size} bytes, a crash mid-write; cut on next open)"


def verify(path: Path, *, run_id: str | None = None, head: str | None = None) -> VerifyResult:
    """Check the journal at `path`.

    `run_id`: the run the journal must belong to (its first record names it).
    `head`: the expected hash of the last line, kept elsewhere; catches an edited last line
    or lines cut off the end, which the chain alone cannot see.
    Raises OSError if the file cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as f:
        return verify_lines(f, path, run_id=run_id, head=head)


def ends_a_run(lines: list[bytes]) -> bool:
    """Does this journal (its complete lines, with or without their newlines) end as a run
    ends: run_finished, cancelled or compensation_finished, followed only by its seal?
    An archive must (only ended runs are archived): a cut-off tail leaves a chain that
    still holds, but not an end."""
    for line in reversed(lines):
        line = line.removesuffix(b"\n")
        if line.startswith(b'{"type":"sealed"'):  # a run's end is followed by its seal (journal.seal)
            continue
        try:
            return isinstance(decode(line), (RunFinished, Cancelled, CompensationFinished))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
    return False


def require_run_end(result: VerifyResult, lines: list[bytes]) -> VerifyResult:
    """An archive's verdict: `result` (its chain's), failed if the journal does not end as a
    run ends (see ends_a_run) — lines cut off the end of an archive leave a chain that holds."""
    if not result.ok or ends_a_run(lines):
        return result
    return VerifyResult(result.path, False, result.records, result.records,
                        "the archived journal does not end with the run's end (run_finished, "
                        "cancelled or compensation_finished): lines were cut off its end",
                        last_hash=result.last_hash)


def verify_lines(lines: Iterable[bytes], path: Path | str, *, run_id: str | None = None,
                 head: str | None = None) -> VerifyResult:
    """`verify` of a journal's lines (each with its newline) read from elsewhere, such as a
    compressed archive; `path` is where they came from, for the verdict."""
    prev = GENESIS
    number = 0
    torn = 0
    for raw in lines:
        if not raw.endswith(b"\n"):
            torn = len(raw)  # only the last line can lack its newline
            break
        number += 1
        line = raw[:-1]
        problem = _check(line, number, prev, run_id)
        if problem:
            return VerifyResult(path, False, number - 1, number, problem, last_hash=prev)
        prev = hashlib.sha256(line).hexdigest()
    if head is not None and head != prev:
        where = number or 1
        problem = f"the chain's head is {prev[:12]}…, not the expected {head[:12]}…"
        problem += " (the last line was changed, or lines were cut off the end)"
        return VerifyResult(path, False, max(number - 1, 0), where, problem, torn, prev)
    return VerifyResult(path, True, number, torn_bytes=torn, last_hash=prev)


def _check(line: bytes, number: int, prev: str, run_id: str | None) -> str | None:
    """The problem with one complete line, or None."""
    if not line.strip():
        return "empty line (a journal line is one JSON record)"
    try:
        record: AnyRecord = decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return f"not a valid record ({exc})"
    if record.seq != number:
        return f"seq {record.seq} where {number} was expected (a line was removed, inserted or moved)"
    if number == 1:
        if not isinstance(record, RunStarted):
            return f"first record is '{_type(record)}', not 'run_started'"
        if record.prev != GENESIS:
            return "prev of line 1 is not GENESIS (64 zeros): lines were cut off the start"
        if run_id is not None and record.run_id != run_id:
            return f"journal of run '{record.run_id}' where run '{run_id}' was expected"
        if record.format > FORMAT:  # its other lines may mean what this version cannot tell
            return (f"journal format {record.format} is newer than this Ratchet reads ({FORMAT}); "
                    "upgrade Ratchet to read it")
        problem = _check_definition(record)
        if problem:
            return problem
    elif isinstance(record, RunStarted):
        return "a second run_started (only line 1 starts the run)"
    elif record.prev != prev:
        return (
            f"hash chain broken (prev does not match line {number - 1}: "
            f"line {number - 1} or this prev was changed)"
        )
    elif isinstance(record, Upgraded):  # it pins a definition too: the same check
        problem = _check_definition(record)
        if problem:
            return problem
    return _check_ts(record.ts)


def _check_definition(record: RunStarted | Upgraded) -> str | None:
    """The pinned definition is a JSON object whose hash is `definition_hash`: sha256 of
    its JSON with sorted keys and compact separators (see FORMAT.md)."""
    try:
        definition = msgspec.json.decode(record.definition)
    except msgspec.DecodeError as exc:
        return f"definition is not JSON ({exc})"
    if not isinstance(definition, dict):
        return "definition is not a JSON object"
    if hash_definition(definition) != record.definition_hash:
        return "definition does not match definition_hash (the pinned definition was changed)"
    return None


def _check_ts(ts: str) -> str | None:
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return f"ts {ts!r} is not an ISO 8601 time"
    if moment.utcoffset() != timedelta(0):
        return f"ts {ts!r} is not UTC"
    return None


def _type(record: AnyRecord) -> str:
    return record_type(record)
