"""Ratchet's engine: machine definitions, the runner, the supervisor, the inbox and the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.run.context import Fire

if TYPE_CHECKING:
    from engine.api import Ratchet

__all__ = ["Fire", "Ratchet"]


def __getattr__(name: str) -> Any:
    # `Ratchet` is loaded on first use: `import engine` (every action module, every worker)
    # and `ratchet --help` do not pay for the API's imports (the runner, pydantic, ...).
    if name == "Ratchet":
        from engine.api import Ratchet

        return Ratchet
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
