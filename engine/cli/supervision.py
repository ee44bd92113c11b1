"""Commands: supervision (registered on engine.cli.app.main)."""
