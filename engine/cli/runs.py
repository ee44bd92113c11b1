"""Commands: runs (registered on engine.cli.app.main)."""
