"""Commands: inbox (registered on engine.cli.app.main)."""
