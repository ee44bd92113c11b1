"""Seeing runs: a run's report page and the live dashboard (`ratchet report`, `ratchet ui`).

Sits above `engine.supervise` (its status rows) and below `engine.cli`. Jinja2 and the web
stack are imported only by the modules that render, so `ratchet --help` never loads them.
"""

from __future__ import annotations

from importlib import import_module

UI_EXTRA = "pip install 'ratchet[ui]'"  # or, from a clone: pip install -e '.[ui]'


def missing(*modules: str) -> list[str]:
    """Which of `modules` (of the `ui` extra) cannot be imported. Called by the commands that
    need them, just before they import them anyway."""
    absent = []
    for name in modules:
        try:
            import_module(name)
        except ImportError:
            absent.append(name)
    return absent
