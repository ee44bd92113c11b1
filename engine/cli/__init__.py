"""Ratchet's command line. Each module here registers one family of commands on `main`."""

# Command families register themselves on import.
from engine.cli import archive, audit, definitions, inbox, keys, report, runs, supervision, ui  # noqa: F401
from engine.cli.app import main

__all__ = ["main"]
