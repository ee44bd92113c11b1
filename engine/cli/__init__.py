"""Ratchet's command line. Each module here registers one family of commands on `main`."""

# Command families register themselves on import.
import engine.cli.prestart  # noqa: F401  (first: `ratchet supervise` starts its forkserver now)
from engine.cli import (  # noqa: F401
    archive,
    audit,
    definitions,
    inbox,
    keys,
    report,
    runs,
    supervision,
    transfer,
    ui,
)
from engine.cli.app import main

__all__ = ["main"]
