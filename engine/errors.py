"""The engine's error tree: one base class, a few leaves with structured attributes.

Messages read `where: what; hint`, so the CLI can print them as one line.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


# --- Definition errors (machine files and Python machine modules) ---------------------

from dataclasses import dataclass  # noqa: E402  (kept beside its only users)
from typing import Literal  # noqa: E402


@dataclass(frozen=True)
class Problem:
    """One mistake in a definition. `where` is a file (with `line`) or a Python object."""

    where: str
    line: int | None
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        place = f"{self.where}:{self.line}" if self.line else self.where
        label = "warning: " if self.severity == "warning" else ""
        return f"{place}: {label}{self.message}"


class DefinitionError(EngineError):
    """A machine definition is invalid. `problems` lists every error (and warning) found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors or self.problems))
