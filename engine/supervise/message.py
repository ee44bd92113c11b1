"""The inbox file format: what a message is, and how a writer drops one.

A message is one file in `inbox/`: UTF-8 JSON or YAML (YAML without aliases: an alias
bomb fits in a few bytes), at most MAX_BYTES, holding a mapping validated by the
pydantic `Message` model: a trigger for a run, a human's resolution of an escalation,
a cancel (`{"run": ID, "cancel": true, "by": NAME, "reason": TEXT}`), or an upgrade to
another definition of the run's machine (`"upgrade": {definition, definition_hash,
source}`, written by `ratchet upgrade`).
`parse_message` turns bytes into a Message or says why not (InvalidMessageError).

Writers write into `inbox/.tmp`, fsync and rename into `inbox/` (`write_message` does
this for the CLI), so a reader never sees half a file. What happens to a file once it
is in the inbox (claiming, reading, filing) is `engine.supervise.inbox`.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import InvalidMessageError  # also imported from here by supervisor.py
from engine.supervise.inbox import MAX_BYTES as MAX_BYTES  # what the inbox reads at all (also imported from here)
from engine.supervise.inbox import SUFFIXES as SUFFIXES
from engine.trust.people import PERSON_PATTERN
from journal import InvalidRunIdError, check_run_id
from journal.durable import publish

MAX_DEPTH = 32  # nesting of `data`; deeper is a hostile file, not a business message
TRIGGER_PATTERN = r"^[a-z][a-z0-9_]*$"
SENDER_PATTERN = PERSON_PATTERN


class WriterHome(Protocol):
    """What `write_message` needs of `engine.home.Home`."""

    inbox: Path
    inbox_tmp: Path


class Upgrade(BaseModel):
    """What an upgrade message carries: the new definition in its canonical form (as a
    run pins it), that form's hash, and the file it came from (its actions resolve beside it)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    definition: dict[str, Any]
    definition_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    source: str | None = Field(default=None, max_length=4096)

    @field_validator("definition")
    @classmethod
    def _json_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value, 1)
        return value


class Signature(BaseModel):
    """A signed message's envelope (engine.trust.envelope): the wait it answers, until when
    it may be used, and the Ed25519 signature (base64) of the rest of the message."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    answers: int = Field(ge=0)
    expires: str = Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
    value: str = Field(pattern=r"^[A-Za-z0-9+/]{86}==$")


class Message(BaseModel):
    """One inbox file: a trigger for a run, a human's resolution of an escalation, a
    cancel, or an upgrade."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    run: str
    trigger: str | None = Field(default=None, pattern=TRIGGER_PATTERN, max_length=64)
    by: str = Field(pattern=SENDER_PATTERN)
    comment: str | None = Field(default=None, max_length=4000)
    data: dict[str, Any] = Field(default_factory=dict)
    resolve: Literal["retry", "skip", "abort"] | None = None
    cancel: bool = False
    reason: str | None = Field(default=None, max_length=4000)  # why a cancel (kept in `cancelled`)
    upgrade: Upgrade | None = None
    signature: Signature | None = None  # proves `by` where the home has a people file

    @field_validator("run")
    @classmethod
    def _run_id(cls, value: str) -> str:
        try:
            return check_run_id(value)
        except InvalidRunIdError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("data")
    @classmethod
    def _json_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value, 1)
        return value

    @model_validator(mode="after")
    def _trigger_matches_resolve(self) -> Message:
        if self.cancel or self.upgrade is not None:
            what = "cancel" if self.cancel else "upgrade"
            if self.cancel and self.upgrade is not None:
                raise ValueError("a message is a cancel or an upgrade, not both")
            extra = [name for name in ("trigger", "resolve", "data") if getattr(self, name)]
            if extra:
                raise ValueError(f"{what} takes no {' or '.join(repr(name) for name in extra)}")
            if self.reason is not None and not self.cancel:
                raise ValueError("'reason' goes with cancel only (an upgrade takes 'comment')")
            return self
        if self.reason is not None:
            raise ValueError("'reason' goes with cancel only (a trigger or resolution takes 'comment')")
        if self.resolve in (None, "skip") and self.trigger is None:
            raise ValueError("'trigger' is required" + (" for resolve: skip" if self.resolve else ""))
        if self.resolve in ("retry", "abort") and self.trigger is not None:
            raise ValueError(f"resolve: {self.resolve} takes no 'trigger'")
        return self


def _check_json(value: Any, depth: int) -> None:
    # YAML yields dates, sets and non-string keys; the journal would store them as
    # something else than what replay reads back, so only plain JSON values pass.
    if depth > MAX_DEPTH:
        raise ValueError(f"data nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"data keys must be strings, not {key!r}")
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("data holds NaN or infinity")
    elif not isinstance(value, (str, int, bool)) and value is not None:
        raise ValueError(f"data holds a {type(value).__name__}; only JSON values are allowed")


# --- Parsing --------------------------------------------------------------------------


def parse_message(data: bytes, suffix: str) -> Message:
    """Parse JSON or YAML bytes into a Message; InvalidMessageError on any mistake."""
    return parse_message_object(data, suffix)[0]


def parse_message_object(data: bytes, suffix: str) -> tuple[Message, dict[str, Any]]:
    """The Message, and the object the file holds as written (what a signature covers)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessageError("not UTF-8 text", str(exc)) from exc
    if not text.strip():
        raise InvalidMessageError("empty file")
    try:
        raw = _load_json(text) if suffix == ".json" else yaml.load(text, Loader=_NoAliasLoader)
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        kind = "JSON" if suffix == ".json" else "YAML"
        raise InvalidMessageError(f"invalid {kind}", " ".join(str(exc).split())[:300]) from exc
    if not isinstance(raw, dict):
        raise InvalidMessageError("not a mapping", f"the file holds a {type(raw).__name__}; write {{run, trigger, by}}")
    try:
        return Message.model_validate(raw), raw
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors()[:10])
        raise InvalidMessageError("invalid message", problems) from exc
    except RecursionError as exc:
        raise InvalidMessageError("invalid message", "nested too deeply") from exc


def _load_json(text: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate key in {keys}")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases (a 'billion laughs' file is a few bytes)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", event.start_mark)
        return super().compose_node(parent, index)


# --- Writing (the CLI and any tool) ---------------------------------------------------


def message_name(message: Message) -> str:
    """A unique, sortable, readable file name for `message`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    what: str | None = message.trigger if message.resolve in (None, "skip") else message.resolve
    if message.cancel or message.upgrade is not None:
        what = "cancel" if message.cancel else "upgrade"
    return f"{stamp}-{message.run}-{what}-{secrets.token_hex(3)}.json"


def write_message(home: WriterHome, message: Message) -> Path:
    """Drop `message` into the inbox atomically: write in .tmp, fsync, rename, fsync dir."""
    for folder in (home.inbox, home.inbox_tmp):
        folder.mkdir(parents=True, exist_ok=True)
    name = message_name(message)
    payload = message.model_dump_json(exclude_defaults=True).encode() + b"\n"
    return publish(home.inbox_tmp / name, home.inbox / name, payload, exclusive=True, mode=0o644)
