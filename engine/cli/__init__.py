"""Ratchet's command line. Each module here registers one family of commands on `main`,
imported when its command is asked for (engine.cli.app.COMMAND_MODULES)."""

import engine.cli.prestart  # noqa: F401  (first: `ratchet supervise` starts its forkserver now)
from engine.cli.app import main

__all__ = ["main"]
