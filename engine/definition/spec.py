"""The definition model: a machine's states and transitions, validated by pydantic.

YAML files and Python modules both end up here (engine.definition.loader), so a machine written
either way has one canonical form and one hash: the form pinned in a run's journal.

The checks in this module are about one object at a time (a name, a duration, a state's
fields fitting its kind). Checks across the graph (unknown or unreachable states, no
way out) live in engine.definition.checks, so that they can run even where pydantic found errors.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.definition.durations import parse_duration
from engine.definition.machine import IMPORT_PATH
from engine.definition.reserved import ERROR as ERROR  # also imported from here
from engine.definition.reserved import OK as OK
from engine.definition.reserved import TIMEOUT as TIMEOUT
from engine.definition.spawn_spec import SpawnSpec
from journal import hash_definition

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
CLASS_NAME = re.compile(r"^[A-Za-z_]\w*$")


# Optional fields of machines and states added after definitions were first pinned: the
# canonical form omits them while unset (MachineSpec.canonical).
ADDED_LATER: tuple[str, ...] = ("on_cancel",)
# Who may act (README "Who decided"): omitted from the canonical form while unset (None or false).
ADDED_LATER += ("resolvers", "operators", "quorum", "not_starter")
ADDED_LATER += ("spawn",)  # fan-out (engine.definition.spawn_spec)


def _check_name(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(
            f"{value!r} is not a name: YAML 1.1 reads on/off/yes/no as booleans; quote it"
        )
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(
            f"invalid name {value!r}: use lowercase letters, digits and '_', starting with a letter"
        )
    return value


def _check_import_path(value: Any) -> Any:
    if not isinstance(value, str) or not IMPORT_PATH.match(value):
        raise ValueError(f"invalid import path {value!r}: write 'package.module:function'")
    return value


def _check_version(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        hint = " (YAML reads 1.10 as the number 1.1: quote it)" if isinstance(value, float) else ""
        raise ValueError(f"version must be an integer or a string, not {value!r}{hint}")
    return value


def _listify(value: Any) -> Any:
    # The `transitions` vocabulary allows one string where a list is meant.
    return [value] if isinstance(value, str) else value


def _seconds(value: Any) -> float:
    return parse_duration(value)


def _seconds_or_zero(value: Any) -> float:
    return parse_duration(value, allow_zero=True)


Name = Annotated[str, BeforeValidator(_check_name)]
ImportPath = Annotated[str, BeforeValidator(_check_import_path)]
Duration = Annotated[float, BeforeValidator(_seconds)]  # seconds; written as 500ms/30s/15m/48h/2d
Backoff = Annotated[float, BeforeValidator(_seconds_or_zero)]
Predicates = Annotated[list[ImportPath], BeforeValidator(_listify)]


class _Strict(BaseModel):
    # A misspelt field (`acton:`) must be an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Strict):
    """How a task state retries: `attempts` in all (1 = no retry), exponential backoff."""

    attempts: int = Field(1, ge=1)
    backoff: Backoff = 1.0  # seconds before the 2nd attempt
    factor: float = Field(2.0, ge=1)
    max_backoff: Duration = 300.0  # seconds; the cap on one wait
    jitter: bool = True


class StateSpec(_Strict):
    """One state. Its kind follows from its fields: `final`, else `action` (task), else waiting.

    `non_retryable` lists exceptions that end retries at once (escalation, or the `error`
    transition): either an import path `module:ExceptionClass`, resolved at validation,
    or a bare class name matched against the names in the raised exception's class
    hierarchy (so `CardDeclined` matches a subclass of it too).
    """

    action: ImportPath | None = None
    retry: RetryPolicy | None = None
    timeout: Duration | None = None  # task: one attempt's limit; waiting: fires `timeout`
    idempotent: bool = True
    approvers: list[Name] | None = None
    final: bool = False
    outcome: str | None = None
    on_escalate: ImportPath | None = None
    non_retryable: list[str] = []
    on_cancel: ImportPath | None = None  # compensation when a run is cancelled here (else the machine's)
    resolvers: list[Name] | None = None  # who may resolve an escalation here (else the machine's)
    quorum: dict[Name, Annotated[int, Field(ge=1)]] | None = None  # waiting: distinct approvers a trigger needs
    not_starter: bool = False  # waiting: the run's starter may not fire its triggers (four eyes)
    spawn: SpawnSpec | None = None  # a spawning state: child runs, joined (engine.definition.spawn_spec)

    @property
    def kind(self) -> Literal["task", "waiting", "final"]:
        if self.final:
            return "final"
        return "task" if self.action else "waiting"

    @field_validator("non_retryable")
    @classmethod
    def _exception_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not (IMPORT_PATH.match(name) or CLASS_NAME.match(name)):
                raise ValueError(
                    f"{name!r} is neither an exception class name nor 'module:ExceptionClass'"
                )
        return names

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> StateSpec:
        kind = self.kind
        misplaced = {
            "task": ("approvers", "outcome", "quorum", "not_starter"),
            "waiting": ("retry", "non_retryable", "idempotent", "outcome"),
            "final": ("action", "retry", "timeout", "idempotent", "approvers", "on_escalate",
                      "non_retryable", "on_cancel", "resolvers", "quorum", "not_starter"),
        }[kind]
        # Compare with the defaults, not `model_fields_set`: the canonical form spells
        # every field out and must validate again unchanged.
        fields = type(self).model_fields
        wrong = [name for name in misplaced if getattr(self, name) != fields[name].get_default()]
        if wrong:
            where = {"task": "a task state (it has an action)",
                     "waiting": "a waiting state (it has no action)",
                     "final": "a final state"}[kind]
            raise ValueError(f"{', '.join(wrong)} cannot be set on {where}")
        if self.approvers is not None and not self.approvers:
            raise ValueError("approvers is empty: nobody could act; list names or drop it")
        for field in ("resolvers",):
            if getattr(self, field) == []:
                raise ValueError(f"{field} is empty: nobody could act; list names or drop it")
        for trigger, needed in (self.quorum or {}).items():
            if self.approvers is not None and needed > len(self.approvers):
                raise ValueError(f"quorum of '{trigger}' is {needed} but only {len(self.approvers)} approvers "
                                 "are listed: it could never be met; list more approvers or lower it")
        return self


class TransitionSpec(_Strict):
    """`trigger` moves a run from any state in `source` (or "*": every state) to `dest`,
    if every `conditions` predicate is true and every `unless` predicate is false."""

    trigger: Name
    source: Annotated[list[str], BeforeValidator(_listify)]
    dest: Name
    conditions: Predicates = []
    unless: Predicates = []

    @field_validator("source")
    @classmethod
    def _sources(cls, sources: list[str]) -> list[str]:
        if not sources:
            raise ValueError("source is empty: name a state, a list of states or '*'")
        if "*" in sources and len(sources) > 1:
            raise ValueError("'*' already means every state: write it alone")
        for name in sources:
            if name != "*":
                _check_name(name)
        return sources


class MachineSpec(_Strict):
    """A whole machine, as written. `canonical()` is what a run pins, `hash()` its identity."""

    name: Name
    version: Annotated[int | str, BeforeValidator(_check_version)]
    initial: Name
    states: dict[Name, StateSpec] = Field(min_length=1)
    transitions: list[TransitionSpec]
    on_escalate: ImportPath | None = None
    on_cancel: ImportPath | None = None  # compensation run once when a run is cancelled
    resolvers: list[Name] | None = None  # who may resolve escalations (a state's own list wins there)
    operators: list[Name] | None = None  # who may cancel or upgrade a run

    @model_validator(mode="after")
    def _someone_may_act(self) -> MachineSpec:
        for field in ("resolvers", "operators"):
            if getattr(self, field) == []:
                raise ValueError(f"{field} is empty: nobody could act; list names or drop it")
        return self

    def canonical(self) -> dict[str, Any]:
        """Plain JSON data, every field explicit, durations in seconds: the pinned form.

        Defaults are written out so that a pinned run keeps its behaviour even if a
        later engine changes a default. Fields added later (ADDED_LATER) are the
        exception: left out while unset, so a machine that does not use them keeps the
        form and hash it had before they existed (as journal records omit new defaults).
        """
        canonical = self.model_dump(mode="json")
        for fields in (canonical, *canonical["states"].values()):
            for name in ADDED_LATER:
                if fields.get(name) is None or fields.get(name) is False:
                    fields.pop(name, None)
        return canonical

    def hash(self) -> str:
        """`sha256:<hex>` of the canonical JSON (sorted keys, compact separators)."""
        return hash_definition(self.canonical())
