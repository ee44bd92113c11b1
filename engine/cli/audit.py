"""Commands: audit (registered on engine.cli.app.main)."""
