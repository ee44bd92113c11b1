"""Ratchet's command line. Each module here registers one family of commands on `main`,
imported when its command is asked for (engine.cli.app.COMMAND_MODULES)."""

from engine.cli.app import main

__all__ = ["main"]
