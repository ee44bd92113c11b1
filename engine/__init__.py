"""Ratchet's engine: machine definitions, the runner, the supervisor, the inbox and the CLI."""

from engine.run.context import Fire

__all__ = ["Fire"]
