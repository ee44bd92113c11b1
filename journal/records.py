"""Journal record types: one msgspec tagged union, one JSON object per line.

Every record carries `type` (the tag), `seq` (1-based, equal to its line number),
`ts` (UTC ISO 8601) and `prev` (sha256 hex of the previous line's bytes, without its
newline; GENESIS, 64 zeros, on the first line). The rest is what the engine needs to rebuild a run
and what an auditor needs to read its story.

Schema evolution follows msgspec's rules: new fields get defaults, fields are never
reordered or retyped, record types are never renamed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec

GENESIS = "0" * 64
FORMAT = 1  # the journal format this version writes and reads (RunStarted.format)


class Record(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Fields common to every record. `seq` and `prev` are filled in by the writer.

    Each record type is `kw_only`: its required fields can follow these defaults while
    the common fields stay first on every line: {"type":…,"seq":…,"ts":…,"prev":…,…}
    """

    seq: int = 0
    ts: str = ""
    prev: str = ""


class RunStarted(Record, tag="run_started", kw_only=True):
    """First record of a run: the pinned definition it will follow to the end."""

    run_id: str
    machine: str
    version: int | str
    # Raw JSON (the definition encoded once): most reads (status, replay of thousands of
    # runs of one machine) decode it once per distinct definition, see `pinned_definition`.
    definition: msgspec.Raw
    definition_hash: str
    input: dict[str, Any] = {}
    source: str | None = None  # where the definition was loaded from; actions resolve beside it
    by: str | None = None
    # Last, and omitted at its default: journals of format 1 keep their exact bytes. A
    # reader refuses a greater format rather than half-understand it (FORMAT.md).
    format: int = FORMAT
    # The code the definition names, as it was when the run started: module name ->
    # "sha256:<hex>" of its source file (`ratchet status` flags a module changed since).
    code: dict[str, str] = {}
    # A child run (fan-out): the run that spawned it and the spawning state there.
    parent: str | None = None
    parent_state: str | None = None


class StepStarted(Record, tag="step_started", kw_only=True):
    """Written (and fsync'd) before an action is called."""

    state: str
    attempt: int
    idempotency_key: str


class StepSucceeded(Record, tag="step_succeeded", kw_only=True):
    state: str
    attempt: int
    trigger: str
    data: dict[str, Any] = {}
    duration_ms: float | None = None


class StepFailed(Record, tag="step_failed", kw_only=True):
    state: str
    attempt: int
    error: str
    error_type: str = ""
    retryable: bool = True
    duration_ms: float | None = None
    where: str = ""  # `file:line` where the exception was raised (the innermost frame)
    traceback: str = ""  # its last frames, bounded (engine.run.outcome.TRACEBACK_BYTES)


class StepAbandoned(Record, tag="step_abandoned", kw_only=True):
    """An in-flight step whose worker died, hung past its timeout, or was stopped."""

    state: str
    attempt: int
    reason: str


class RetryScheduled(Record, tag="retry_scheduled", kw_only=True):
    """A durable backoff: the next attempt is due at `due`, whoever is running then."""

    state: str
    attempt: int  # the attempt that will run next
    due: str
    delay_s: float


class Transition(Record, tag="transition", kw_only=True):
    trigger: str
    source: str
    dest: str


class Waiting(Record, tag="waiting", kw_only=True):
    """The run waits for a trigger from outside; `deadline` None means forever (declared)."""

    state: str
    triggers: list[str]
    approvers: list[str] | None = None
    deadline: str | None = None


class TriggerReceived(Record, tag="trigger_received", kw_only=True):
    """A trigger from outside, accepted: who sent it and from which inbox file."""

    trigger: str
    state: str
    by: str
    source_file: str | None = None
    comment: str | None = None
    data: dict[str, Any] = {}
    # Who decided, as proven (README "Who decided"): `verified` False in an open home (no
    # people.yaml); True with `via` "unix_user" (the file's owner) or "signature" (Ed25519),
    # or "engine" (by "ratchet": the supervisor's own cancel of a child no longer wanted);
    # `signature` is the message's signature (base64), so the same one is never used twice.
    verified: bool | None = None
    via: str | None = None
    signature: str | None = None
    votes: list[str] = []  # a trigger with a quorum: every approver who voted for it, this one last


class TriggerVoted(Record, tag="trigger_voted", kw_only=True):
    """One approval toward a trigger that needs several (a state's `quorum`): counted, the
    run still waits. The approval that meets the quorum is a `trigger_received` instead."""

    trigger: str
    state: str
    by: str
    count: int  # approvals of `trigger` in this wait so far, this one included
    needed: int  # the quorum
    source_file: str | None = None
    comment: str | None = None
    data: dict[str, Any] = {}
    # Who decided, as proven: as in TriggerReceived.
    verified: bool | None = None
    via: str | None = None
    signature: str | None = None


class TriggerRefused(Record, tag="trigger_refused", kw_only=True):
    """A trigger for this run that was refused (wrong state, not an approver): kept for audit."""

    trigger: str
    state: str
    by: str
    reason: str
    source_file: str | None = None
    # Who decided, as proven: as in TriggerReceived.
    verified: bool | None = None
    via: str | None = None
    signature: str | None = None


class TimeoutFired(Record, tag="timeout_fired", kw_only=True):
    state: str
    deadline: str


class Escalated(Record, tag="escalated", kw_only=True):
    """The run is parked for a human; `ticket` is the escalation file's path."""

    state: str
    reason: str
    detail: str = ""
    ticket: str | None = None


class Resolved(Record, tag="resolved", kw_only=True):
    """A human's answer to an escalation: retry, skip (fire `trigger`) or abort."""

    action: str
    by: str
    trigger: str | None = None
    comment: str | None = None
    source_file: str | None = None
    # Who decided, as proven: as in TriggerReceived.
    verified: bool | None = None
    via: str | None = None
    signature: str | None = None


class RunFinished(Record, tag="run_finished", kw_only=True):
    state: str
    outcome: str | None = None


class CutStep(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The step a cancel cut off mid-way (its worker killed): what `cancelled` says of it.

    `outcome_unknown`: the step is not idempotent, so whether its effect happened is
    unknown and someone must check the outside system; an idempotent step is just abandoned.
    """

    state: str
    attempt: int
    idempotency_key: str
    outcome_unknown: bool = False


class Cancelled(Record, tag="cancelled", kw_only=True):
    """The run ended by `ratchet cancel` (or an `abort` resolution): who, why, what it cut."""

    by: str
    reason: str = ""
    source_file: str | None = None  # the inbox file of a `cancel` message
    cut_step: CutStep | None = None  # a step in flight when the cancel came
    # Who decided, as proven: as in TriggerReceived.
    verified: bool | None = None
    via: str | None = None
    signature: str | None = None


class CompensationStarted(Record, tag="compensation_started", kw_only=True):
    """Written (and fsync'd) before a cancelled run's `on_cancel` is called.

    One without its `compensation_finished` is a call cut off by a crash: it is made
    again with the same `idempotency_key` (f"{run_id}/cancel"), `attempt` one more.
    """

    action: str
    attempt: int
    idempotency_key: str


class CompensationFinished(Record, tag="compensation_finished", kw_only=True):
    """What the `on_cancel` call did: nothing more is called after this record."""

    action: str
    attempt: int
    error: str | None = None  # None: it returned; else why it failed (it is not retried)
    error_type: str = ""
    duration_ms: float | None = None


class Upgraded(Record, tag="upgraded", kw_only=True):
    """The run moves to another definition of its machine from here on (`ratchet upgrade`).

    Like `run_started`, it pins the full canonical definition and its hash; replay
    follows the one in force at each point of the journal.
    """

    by: str
    version: int | str
    definition: msgspec.Raw
    definition_hash: str
    from_hash: str  # the definition the run followed until now
    source: str | None = None  # the new definition's file; actions resolve beside it
    source_file: str | None = None  # the inbox file of the `upgrade` message
    comment: str | None = None
    code: dict[str, str] = {}  # fingerprints of the new definition's modules (as run_started's)
    # Who decided, as proven: as in TriggerReceived.
    verified: bool | None = None
    via: str | None = None
    signature: str | None = None


class Sealed(Record, tag="sealed", kw_only=True):
    """A signed checkpoint of the chain's head (journal.seal; FORMAT.md "Seals").

    It covers the line just before it: `through` is that line's seq and `head` its
    sha256 (so equal to this record's `prev`). `sig` is the base64 Ed25519 signature, by
    the home's key `key` (journal.keys.key_id), of the bytes journal.seal.message() builds.
    """

    through: int
    head: str
    key: str
    sig: str


class ChildRun(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One child a `spawned` record starts: its id, its key (a for_each index or a branch
    name), the machine it runs (as the definition names it) and its input."""

    run_id: str
    key: str
    machine: str
    input: dict[str, Any] = {}


class Spawned(Record, tag="spawned", kw_only=True):
    """A spawning state starts `children` (written, and fsync'd, before they are created).

    `total`: how many children the state's spawn makes in all; a `max_parallel` spawn
    writes one such record each time slots free up, listing the ones started then.
    """

    state: str
    children: list[ChildRun]
    total: int


class ChildFinished(Record, tag="child_finished", kw_only=True):
    """A child run ended (finished or cancelled): journaled once per child in its parent."""

    state: str
    child: str
    key: str
    status: str  # "finished" or "cancelled"
    outcome: str | None = None
    data: dict[str, Any] = {}


AnyRecord = (
    RunStarted
    | StepStarted
    | StepSucceeded
    | StepFailed
    | StepAbandoned
    | RetryScheduled
    | Transition
    | Waiting
    | TriggerReceived
    | TriggerRefused
    | TimeoutFired
    | Escalated
    | Resolved
    | RunFinished
    | Cancelled
    | CompensationStarted
    | CompensationFinished
    | Upgraded
    | TriggerVoted
    | Sealed
    | Spawned
    | ChildFinished
)

# One encoder and one decoder for the whole process: building them is the slow part.
_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyRecord] = msgspec.json.Decoder(AnyRecord)


def record_type(record: Record) -> str:
    """The record's `type` on its line, e.g. "step_failed"."""
    return str(type(record).__struct_config__.tag)


def encode(record: Record) -> bytes:
    """The record's line, without the trailing newline."""
    return _encoder.encode(record)


def decode(line: bytes) -> AnyRecord:
    """Parse one line (newline optional). Raises msgspec.DecodeError / ValidationError."""
    return _decoder.decode(line)


def decode_lines(data: bytes) -> list[AnyRecord]:
    """Parse newline-separated records in one call (~2x faster than line by line).

    It skips blank lines and accepts two records on one line: `reader.parse` guards it.
    """
    return _decoder.decode_lines(data)


def decode_each(lines: list[bytes]) -> list[AnyRecord]:
    """Parse each line as one record (a trailing newline is whitespace), in one C-level loop."""
    return list(map(_decoder.decode, lines))


def to_builtins(record: Record) -> dict[str, Any]:
    """The record as plain JSON-able data, exactly as it is on disk."""
    plain: dict[str, Any] = msgspec.to_builtins(record, enc_hook=_raw_to_builtins)
    return plain


def _raw_to_builtins(value: Any) -> Any:
    if isinstance(value, msgspec.Raw):
        return msgspec.json.decode(value)
    raise NotImplementedError(f"cannot convert {type(value).__name__}")


# definition_hash -> (the definition's exact bytes, the dict decoded from them).
_definitions: dict[str, tuple[bytes, dict[str, Any]]] = {}


def hash_definition(definition: dict[str, Any]) -> str:
    """`definition_hash`: "sha256:" + hex of the definition's JSON, keys sorted, compact."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def pinned_definition(record: RunStarted | Upgraded) -> dict[str, Any]:
    """The definition a record pins, as a dict: decoded once per distinct definition.

    Callers must not mutate it: runs with byte-identical definitions share one dict.
    """
    raw = record.definition
    if isinstance(raw, dict):
        return raw
    key = bytes(raw)
    # Found by the hash the record claims, a short string, but used only if the bytes are
    # the same: hashing a 2 KB key on every run_started cost more than comparing it.
    known = _definitions.get(record.definition_hash)
    if known is not None and known[0] == key:
        return known[1]
    if len(_definitions) >= 256:  # a handful of machines in practice; never grow unbounded
        _definitions.clear()
    definition: dict[str, Any] = msgspec.json.decode(key)
    _definitions[record.definition_hash] = (key, definition)
    return definition
