"""Ratchet's command line. Each module here registers one family of commands on `main`,
imported when its command is asked for (engine.cli.app.COMMAND_MODULES).

`main` (the click group) is loaded on first use: the console script's own start of
`ratchet supervise` (engine.cli.launch) imports modules of this package without click."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.cli.app import main

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from engine.cli.app import main

        return main
    raise AttributeError(f"module 'engine.cli' has no attribute {name!r}")
