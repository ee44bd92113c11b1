"""Commands: definitions (registered on engine.cli.app.main)."""
