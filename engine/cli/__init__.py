"""Ratchet's command line. Each module here registers one family of commands on `main`."""

from engine.cli.app import main

# Command families register themselves on import.
from engine.cli import definitions, runs, supervision, audit, inbox  # noqa: E402,F401

__all__ = ["main"]
