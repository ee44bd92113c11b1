"""`Problem`: one located mistake in a machine definition (a value, not an error).

Definition checks collect every problem before anything is raised, so that `ratchet
validate` reports them all at once; `engine.errors.DefinitionError` then carries the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One mistake in a definition. `where` is a file (with `line`) or a Python object."""

    where: str
    line: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        place = f"{self.where}:{self.line}" if self.line else self.where
        label = "warning: " if self.severity == "warning" else ""
        return f"{place}: {label}{self.message}"
