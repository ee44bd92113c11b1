"""Ratchet's engine: machine definitions, the runner, the supervisor, the inbox and the CLI."""
