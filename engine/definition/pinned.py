"""A pinned definition as plain typed objects, read without pydantic.

A run follows the definition pinned in its journal: the canonical form
(engine.definition.spec.MachineSpec.canonical), validated once, when the run started or
was upgraded. Running it again (after a crash, in a worker) needs only its fields, so it
is read here with msgspec into frozen Structs whose fields and defaults mirror the
pydantic models (`PinnedState` mirrors `StateSpec`, and so on): no validation is repeated,
and a supervisor or worker that only continues runs never imports pydantic (about 100 ms
of start-up). Every machine, validated or pinned, answers the engine's questions from
these objects (engine.definition.machine.Machine).

tests/unit/test_pinned_spec.py checks that the fields and defaults match the models'.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class PinnedRetry(msgspec.Struct, frozen=True):
    """RetryPolicy, pinned: `attempts` in all, exponential backoff in seconds."""

    attempts: int = 1
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 300.0
    jitter: bool = True


class PinnedQuorum(msgspec.Struct, frozen=True):
    quorum: int


class PinnedSpawn(msgspec.Struct, frozen=True):
    """SpawnSpec, pinned (engine.definition.spawn_spec says what each field means)."""

    machine: str | None = None
    for_each: str | None = None
    branches: dict[str, str] | None = None
    max_parallel: int | None = None
    join: PinnedQuorum | str = "all"
    let_finish: bool = False
    escalated_children: str = "wait"

    def needed(self, total: int) -> int:
        """How many children must finish for the join to hold, out of `total`."""
        if self.join == "all":
            return total
        if self.join == "any":
            return 1
        return self.join.quorum if isinstance(self.join, PinnedQuorum) else total

    def join_label(self) -> str:
        return f"quorum {self.join.quorum}" if isinstance(self.join, PinnedQuorum) else str(self.join)

    def machines(self) -> list[str]:
        """Every machine the spawn names, in order."""
        if self.branches is not None:
            return list(dict.fromkeys(self.branches.values()))
        return [self.machine] if self.machine else []


class PinnedState(msgspec.Struct, frozen=True):
    """StateSpec, pinned: its kind follows from its fields (`final`, else `action`, else waiting)."""

    action: str | None = None
    retry: PinnedRetry | None = None
    timeout: float | None = None
    idempotent: bool = True
    approvers: list[str] | None = None
    final: bool = False
    outcome: str | None = None
    on_escalate: str | None = None
    non_retryable: list[str] = []
    on_cancel: str | None = None
    resolvers: list[str] | None = None
    quorum: dict[str, int] | None = None
    not_starter: bool = False
    spawn: PinnedSpawn | None = None

    @property
    def kind(self) -> Literal["task", "waiting", "final"]:
        if self.final:
            return "final"
        return "task" if self.action else "waiting"


class PinnedTransition(msgspec.Struct, frozen=True):
    trigger: str
    source: list[str]
    dest: str
    conditions: list[str] = []
    unless: list[str] = []


class PinnedSpec(msgspec.Struct, frozen=True):
    """MachineSpec, pinned."""

    name: str
    version: int | str
    initial: str
    states: dict[str, PinnedState]
    transitions: list[PinnedTransition]
    on_escalate: str | None = None
    on_cancel: str | None = None
    resolvers: list[str] | None = None
    operators: list[str] | None = None


def read_pinned(definition: dict[str, Any]) -> PinnedSpec:
    """The typed form of a canonical definition; msgspec.ValidationError if it is not one."""
    return msgspec.convert(definition, PinnedSpec)
