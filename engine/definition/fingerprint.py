"""Fingerprints of the code a definition names: its modules and the sha256 of each one's source.

A run pins its definition, never its code: a deploy can change an action under a run
that started days ago. `run_started` keeps the fingerprint of every module the
definition names (`Machine.code`), so `ratchet status` can flag the modules changed
since (`CodeCheck`). A module's file is found as the loader finds it (the machine's
folder first, then `sys.path`) but without importing it: reading status never runs
user code. Only the named modules are fingerprinted, not what they import.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path

MISSING = "missing"  # what a module no longer found "hashes" to: it changed, certainly


def module_of(import_path: str) -> str:
    """`pkg.mod` of `pkg.mod:function`."""
    return import_path.partition(":")[0]


def locate(module: str, base_dir: Path | None) -> Path | None:
    """The source file `import module` would load with `base_dir` first on the path; None if
    there is none (not found, built in, a namespace package). Imports nothing."""
    search = [str(Path(base_dir).resolve())] if base_dir is not None else []
    search += [entry or "." for entry in sys.path]
    spec: ModuleSpec | None = None
    parts = module.split(".")
    for i in range(len(parts)):
        try:
            spec = PathFinder.find_spec(".".join(parts[: i + 1]), search)
        except (ImportError, ValueError):  # a malformed name or a broken finder: not found
            return None
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


def digest(path: Path | None) -> str:
    """"sha256:<hex>" of the file's bytes, or MISSING."""
    if path is None:
        return MISSING
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return MISSING


def fingerprints(modules: Iterable[str], base_dir: Path | None) -> dict[str, str]:
    """module -> digest of its source, for each module found (a missing one is left out:
    it cannot be told to have changed, and the loader reports it anyway)."""
    found = {module: digest(locate(module, base_dir)) for module in sorted(set(modules))}
    return {module: value for module, value in found.items() if value != MISSING}


class CodeCheck:
    """Which recorded modules differ from their files now. One instance per listing:
    each (module, folder) is located and hashed once, however many runs name it."""

    def __init__(self) -> None:
        self._now: dict[tuple[str, str | None], str] = {}

    def changed(self, code: dict[str, str], base_dir: Path | None) -> list[str]:
        """The modules of `code` (a run's `run_started.code`) whose source changed since."""
        return [module for module, recorded in sorted(code.items()) if self._digest(module, base_dir) != recorded]

    def _digest(self, module: str, base_dir: Path | None) -> str:
        key = (module, str(base_dir) if base_dir is not None else None)
        if key not in self._now:
            self._now[key] = digest(locate(module, base_dir))
        return self._now[key]
