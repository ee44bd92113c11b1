"""Seeing runs: a run's report page and the live dashboard (`ratchet report`, `ratchet ui`).

Sits above `engine.supervise` (its status rows) and below `engine.cli`. Jinja2 and the web
stack are imported only by the modules that render, so `ratchet --help` never loads them.
"""

from __future__ import annotations

from importlib.util import find_spec

UI_EXTRA = "pip install 'ratchet[ui]'"  # or, from a clone: pip install -e '.[ui]'


def missing(*modules: str) -> list[str]:
    """Which of `modules` (of the `ui` extra) are not installed (found without importing them)."""
    return [name for name in modules if find_spec(name) is None]
