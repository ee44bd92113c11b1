"""The `spawn` block of a spawning state: which child runs it starts and when it is joined.

    review_clauses:
      spawn:
        machine: clause_review     # a machine name (found beside this machine's file), a path
        for_each: clauses          # a list in the run's data: one child per item, the item its input
        # or: branches: {legal: legal_signoff, finance: finance_signoff}   (name -> machine)
        max_parallel: 5            # at most this many children live at once (default: all)
        join: all                  # all | any | {quorum: N}
        let_finish: false          # leaving the state early: cancel live children (default) or not
        escalated_children: wait   # wait: a person may still resolve them | fail: count them as failed
      timeout: 2d                  # fires `timeout`, as in any waiting state

Each object is checked here (fields, their shapes, one of for_each / branches); checks
that need the whole machine (a transition on `joined`, the child machine's file) are
engine.definition.spawn_checks'. Kept apart from engine.definition.spec so the spawn
vocabulary lives in one place; spec.py only adds the `spawn` field to a state.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.definition.reserved import FAILED as FAILED  # the join's triggers (also imported from here)
from engine.definition.reserved import JOINED as JOINED

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MACHINE_REF = re.compile(r"^[A-Za-z0-9_./-]+$")


def check_machine_ref(value: Any) -> str:
    if not isinstance(value, str) or not value or not _MACHINE_REF.match(value) or value.startswith("/"):
        raise ValueError(f"invalid machine {value!r}: write a machine name (clause_review) or a path "
                         "relative to this machine's folder (reviews/clause.yaml)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Quorum(_Strict):
    """`join: {quorum: N}`: the join holds once N children finished."""

    quorum: int = Field(ge=1)


class SpawnSpec(_Strict):
    """What a spawning state starts: one child per `for_each` item, or one per branch."""

    machine: str | None = None
    for_each: str | None = None
    branches: dict[str, str] | None = None
    max_parallel: int | None = Field(None, ge=1)
    join: Literal["all", "any"] | Quorum = "all"
    let_finish: bool = False
    escalated_children: Literal["wait", "fail"] = "wait"

    @field_validator("join", mode="before")
    @classmethod
    def _join(cls, value: Any) -> Any:
        if value in ("all", "any") or isinstance(value, (dict, Quorum)):
            return value
        raise ValueError(f"invalid join {value!r}: write all, any or {{quorum: N}}")

    @field_validator("machine")
    @classmethod
    def _machine(cls, value: str | None) -> str | None:
        return None if value is None else check_machine_ref(value)

    @field_validator("for_each")
    @classmethod
    def _for_each(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError(f"for_each {value!r} is not a data key: name a key of the run's data (clauses)")
        return value

    @field_validator("branches")
    @classmethod
    def _branches(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("branches is empty: name at least one branch and its machine")
        for name, machine in value.items():
            if not _NAME.match(name):
                raise ValueError(f"invalid branch name {name!r}: use lowercase letters, digits and '_', "
                                 "starting with a letter")
            check_machine_ref(machine)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SpawnSpec:
        if (self.for_each is None) == (self.branches is None):
            raise ValueError("write either for_each (one child per item of a list) or branches "
                             "(one child per named branch), not both and not neither")
        if self.for_each is not None and self.machine is None:
            raise ValueError("for_each needs 'machine': the machine each child runs")
        if self.branches is not None and self.machine is not None:
            raise ValueError("branches name their machines themselves: drop 'machine'")
        if isinstance(self.join, Quorum) and self.branches is not None and self.join.quorum > len(self.branches):
            raise ValueError(f"join quorum {self.join.quorum} is more than the {len(self.branches)} branches")
        return self

    def needed(self, total: int) -> int:
        """How many children must finish for the join to hold, out of `total`."""
        if self.join == "all":
            return total
        if self.join == "any":
            return 1
        return self.join.quorum if isinstance(self.join, Quorum) else total

    def join_label(self) -> str:
        return f"quorum {self.join.quorum}" if isinstance(self.join, Quorum) else str(self.join)

    def machines(self) -> list[str]:
        """Every machine the spawn names, in order."""
        if self.branches is not None:
            return list(dict.fromkeys(self.branches.values()))
        return [self.machine] if self.machine else []
