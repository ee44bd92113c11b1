"""`ratchet keys`: Ed25519 key pairs for people who sign inbox messages, and the home's sealing key."""

from __future__ import annotations

from engine.cli.app import main


@main.group()
def keys() -> None:
    """Ed25519 keys: `keys new NAME` for a person who signs messages, `keys export` for the home's seal key."""
