"""Load machine definitions from YAML files, Python modules or a pinned journal copy.

Every way in goes through one validation path (`_build`): pydantic for each object,
engine.definition.checks for the graph, then every import path is resolved. All problems are
collected and raised together as one DefinitionError, each located (engine.definition.sources):
`file:line` for YAML, the file and an object path (`states.charge.retry`) for Python.

A Python machine file defines a module attribute `machine`: a MachineSpec (or a plain
dict of the same shape, which reports all field errors at once; a MachineSpec built
from nested model objects stops at the first bad object, as Python does).
"""

from __future__ import annotations

import difflib
import hashlib
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.definition.checks import Finding, Loc, check_graph
from engine.definition.machine import Machine as Machine  # also imported from here
from engine.definition.machine import _import_paths
from engine.definition.machine import _unguarded_moves as _unguarded_moves
from engine.definition.machine import resolve_import as resolve_import
from engine.definition.sources import NO_DATA, Source, describe, read_python, read_yaml
from engine.definition.spec import NAME, MachineSpec
from engine.errors import DefinitionError, ImportPathError
from engine.problem import Problem

SUFFIXES = (".yaml", ".yml", ".py")


def load_machine(ref: str | Path, machines_dir: Path = Path("machines")) -> Machine:
    """Load a machine from a .yaml/.yml/.py path, or by name from `machines_dir`."""
    return load_file(find_machine(ref, machines_dir))


def find_machine(ref: str | Path, machines_dir: Path = Path("machines")) -> Path:
    """The file `ref` names: itself if it is a path, else `<machines_dir>/<ref>.{yaml,yml,py}`."""
    text = str(ref)
    if isinstance(ref, Path) or text.endswith(SUFFIXES) or "/" in text:
        path = Path(ref)
        if not path.is_file():
            raise DefinitionError([Problem(text, None, "no such file")])
        return path
    if not NAME.match(text):
        raise DefinitionError([Problem(text, None, "not a machine name nor a .yaml/.yml/.py path")])
    found = [machines_dir / f"{text}{suffix}" for suffix in SUFFIXES
             if (machines_dir / f"{text}{suffix}").is_file()]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(str(p) for p in found)
        raise DefinitionError([Problem(text, None, f"ambiguous machine name: {names}; pass a path")])
    known = sorted({p.stem for p in machines_dir.glob("*") if p.suffix in SUFFIXES})
    close = difflib.get_close_matches(text, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise DefinitionError([Problem(text, None, f"no machine named '{text}' in {machines_dir}/{hint}")])


def load_file(path: Path, *, base_dir: Path | None = None) -> Machine:
    """Load one machine file. Import paths resolve from `base_dir` (default: its folder).

    A file whose bytes were loaded before is not parsed again: a supervisor starting
    thousands of runs of one machine validates it once. (Keyed by content, not mtime,
    which can miss an edit made within the same clock tick.)
    """
    path = Path(path)
    try:
        content = path.read_bytes()
        digest = hashlib.sha256(content).digest()
    except OSError as exc:
        raise DefinitionError([Problem(str(path), None, f"cannot read: {exc.strerror}")]) from exc
    key = (str(path.resolve()), digest, str(base_dir))
    machine = _loaded.get(key)
    if machine is None:
        # The bytes hashed are the bytes parsed (a save in between cannot mix versions).
        source = read_python(path) if path.suffix == ".py" else read_yaml(path, content)
        machine = _loaded[key] = _build(source, base_dir or path.parent, path)
    return machine


_loaded: dict[tuple[str, bytes, str], Machine] = {}  # (resolved path, sha256 of its bytes, base_dir)


def machine_from_definition(definition: dict[str, Any], base_dir: Path | None,
                            *, check_imports: bool = True) -> Machine:
    """Rebuild a machine from the canonical dict pinned in a journal.

    `check_imports=False` skips resolving its code: for reading a run (status, graph)
    whose actions may have moved since.
    """
    source = Source(where="pinned definition", raw=definition)
    return _build(source, base_dir, None, check_imports=check_imports)


# --- One validation path ---------------------------------------------------------------

def _build(source: Source, base_dir: Path | None, path: Path | None,
           *, check_imports: bool = True) -> Machine:
    problems = list(source.problems)
    spec = None
    if source.raw is not NO_DATA:
        spec, findings = _validate(source.raw)
        reported = {loc for loc, _, _ in findings}
        findings += [f for f in check_graph(source.raw) if f[0] not in reported]
        if check_imports:
            findings += _check_imports(source.raw, base_dir)
            findings += _check_spawn_machines(source.raw, base_dir, path)
        problems += [source.problem(*finding) for finding in findings]
    problems.sort(key=lambda p: (p.line or 0))
    if spec is None or any(p.severity == "error" for p in problems):
        raise DefinitionError(problems)
    warnings = [p for p in problems if p.severity == "warning"]
    return Machine(spec, base_dir=base_dir, source=path, warnings=warnings)


def _validate(raw: Any) -> tuple[MachineSpec | None, list[Finding]]:
    try:
        return MachineSpec.model_validate(raw), []
    except ValidationError as exc:
        return None, [(tuple(e["loc"]), describe(e), "error") for e in exc.errors()]


def _check_imports(raw: Any, base_dir: Path | None) -> list[Finding]:
    findings: list[Finding] = []
    for loc, import_path, want in _import_paths(raw):
        try:
            obj = resolve_import(import_path, base_dir)
        except ImportPathError as exc:
            findings.append((loc, str(exc), "error"))
            continue
        if want == "exception" and not (isinstance(obj, type) and issubclass(obj, BaseException)):
            findings.append((loc, f"{import_path}: is not an exception class", "error"))
        elif want == "callable" and not callable(obj):
            findings.append((loc, f"{import_path}: is not callable", "error"))
    return findings


def find_child_machine(ref: str, base_dir: Path | None) -> Path:
    """The file a spawn's `machine` names: a name looked up beside the spawning machine's
    file (as ./machines is for the CLI), or a path relative to that folder."""
    folder = Path(base_dir) if base_dir is not None else Path("machines")
    if ref.endswith(SUFFIXES) or "/" in ref:
        return find_machine(folder / ref, folder)
    return find_machine(ref, folder)


class _SpawnLoading(threading.local):
    """The files being loaded for a spawn check in this thread (a machine may spawn itself).
    Per thread: lanes loading machines at once (engine.run.concurrent) must not skip a check
    because another thread is in the middle of loading that file."""

    def __init__(self) -> None:
        self.files: set[str] = set()


_spawn_loading = _SpawnLoading()


def _check_spawn_machines(raw: Any, base_dir: Path | None, path: Path | None) -> list[Finding]:
    """A spawn naming a machine that does not exist, or does not load, is a definition error
    now, not a failed spawn two days later."""
    states = raw.get("states") if isinstance(raw, dict) else None
    if not isinstance(states, dict):
        return []
    findings: list[Finding] = []
    me = str(path.resolve()) if path is not None else None
    for name, fields in states.items():
        spawn = fields.get("spawn") if isinstance(fields, dict) else None
        if not isinstance(spawn, dict):
            continue
        refs: list[tuple[Loc, Any]] = [(("states", name, "spawn", "machine"), spawn.get("machine"))]
        branches = spawn.get("branches")
        if isinstance(branches, dict):
            refs += [(("states", name, "spawn", "branches", branch), ref) for branch, ref in branches.items()]
        for loc, ref in refs:
            if not isinstance(ref, str) or not ref:
                continue
            try:
                child = find_child_machine(ref, base_dir)
                key = str(child.resolve())
                if key == me or key in _spawn_loading.files:
                    continue  # the same machine (or one being checked): loaded already
                _spawn_loading.files.add(key)
                try:
                    load_file(child)
                finally:
                    _spawn_loading.files.discard(key)
            except DefinitionError as exc:
                errors = [p for p in exc.problems if p.severity == "error"]
                # Not found: its message says so; found but invalid: where in that file.
                detail = (errors[0].message if errors[0].line is None else str(errors[0])) if errors else "invalid"
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                findings.append((loc, f"spawn machine '{ref}': {detail}{more}; "
                                      "name a machine file beside this one, or a path relative to it", "error"))
    return findings


