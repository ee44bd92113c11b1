"""Ratchet's engine: machine definitions, the runner, the supervisor, the inbox and the CLI."""

from engine.run.context import Fire  # noqa: E402  (the one name actions import: `engine.Fire`)

__all__ = ["Fire"]
