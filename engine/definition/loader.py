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

import copy
import difflib
import hashlib
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

import msgspec
from pydantic import ValidationError

from engine.definition.checks import Finding, Loc, check_graph
from engine.definition.fingerprint import fingerprints, module_of
from engine.definition.sources import NO_DATA, Source, describe, put_first_on_path, read_python, read_yaml
from engine.definition.spec import IMPORT_PATH, NAME, MachineSpec, StateSpec
from engine.definition.statechart import Statechart
from engine.errors import ConditionError, DefinitionError, ImportPathError
from engine.problem import Problem

SUFFIXES = (".yaml", ".yml", ".py")


class Machine:
    """A validated machine, ready to run: its spec, its pinned form, its resolved code."""

    def __init__(self, spec: MachineSpec, *, base_dir: Path | None = None,
                 source: Path | None = None, warnings: list[Problem] | None = None) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.source = source
        self.warnings = list(warnings or [])
        self.definition = spec.canonical()
        self.pinned = msgspec.Raw(msgspec.json.encode(self.definition))  # as run_started stores it
        self.hash = spec.hash()
        self._resolved: dict[str, Callable[..., Any]] = {}
        self._chart: Statechart | None = None  # built on first use
        self._direct: dict[tuple[str, str], str] | None = None  # see next_state
        self._resolved_source: str | None = None  # see resolved_source
        self._code: dict[str, str] | None = None  # see `code`

    @property
    def name(self) -> str:
        return self.spec.name

    def resolve(self, import_path: str) -> Callable[..., Any]:
        """The callable named by `module:attribute`, the machine's folder first on sys.path.

        ImportPathError if it does not resolve or is not callable (the code changed under
        a run: its definition was checked when the run started)."""
        if import_path not in self._resolved:
            found = resolve_import(import_path, self.base_dir)
            if not callable(found):
                raise ImportPathError(import_path, f"is not callable (it is a {type(found).__name__})")
            self._resolved[import_path] = found
        return self._resolved[import_path]

    @property
    def modules(self) -> list[str]:
        """The modules its import paths name (actions, predicates, hooks, exception classes)."""
        return sorted({module_of(path) for _, path, _ in _import_paths(self.definition)})

    @property
    def code(self) -> dict[str, str]:
        """Fingerprints of those modules' source files (engine.definition.fingerprint), taken
        once per machine: what a run started from this machine records in `run_started`."""
        if self._code is None:
            self._code = fingerprints(self.modules, self.base_dir)
        return self._code

    def state(self, name: str) -> StateSpec:
        try:
            return self.spec.states[name]
        except KeyError:
            raise KeyError(f"machine '{self.name}' has no state '{name}'") from None

    def triggers_from(self, state: str) -> list[str]:
        """Triggers with a transition leaving `state` (including "*" ones), in written order."""
        triggers = [t.trigger for t in self.spec.transitions
                    if state in t.source or (t.source == ["*"] and not self.state(state).final)]
        return list(dict.fromkeys(triggers))

    @property
    def resolved_source(self) -> str | None:
        """The machine file's absolute path, symlinks resolved, taken once (what a run
        started from it records as `source`)."""
        if self._resolved_source is None and self.source is not None:
            self._resolved_source = str(Path(self.source).resolve())
        return self._resolved_source

    def next_state(self, state: str, trigger: str, data: dict[str, Any]) -> str | None:
        """Where `trigger` leads from `state` given the run's `data`; None if nowhere.

        Guards get a copy of `data` (they cannot change the run); one that raises is a
        ConditionError naming the transition, for the caller to escalate or refuse.
        A trigger whose first transition from `state` has no guard is answered from a plain
        table (`transitions` would take that one, whatever the data), with no copy.
        """
        if self._direct is None:
            self._direct = _unguarded_moves(self.spec)
        dest = self._direct.get((state, trigger))
        if dest is not None:
            return dest
        if self._chart is None:
            self._chart = Statechart(self.spec, self._predicate)
        try:
            return self._chart.next_state(state, trigger, copy.deepcopy(data))
        except Exception as exc:
            raise ConditionError(state, trigger, exc) from exc

    def _predicate(self, import_path: str) -> Callable[[dict[str, Any]], bool]:
        # Resolved when first asked, not when the chart is built: a condition whose code
        # no longer imports fails only the transitions it guards (as an ImportPathError).
        def predicate(data: dict[str, Any]) -> bool:
            return bool(self.resolve(import_path)(data))

        predicate.__name__ = import_path
        return predicate

    def on_escalate(self, state: str) -> str | None:
        """The import path to notify when a run escalates in `state`: the state's
        `on_escalate`, else the machine's; None if neither is set."""
        return self.state(state).on_escalate or self.spec.on_escalate

    def retryable(self, state: str, error: BaseException) -> bool:
        """False if `error` is listed in the state's `non_retryable` (by class or class name)."""
        names = {cls.__name__ for cls in type(error).__mro__}
        for entry in self.state(state).non_retryable:
            if ":" in entry:
                # An exception class: checked when the definition was validated (_check_imports).
                if isinstance(error, cast(type[BaseException], self.resolve(entry))):
                    return False
            elif entry in names:
                return False
        return True

    def __repr__(self) -> str:
        return f"<Machine {self.name} v{self.spec.version} {self.hash[:19]}>"


def _unguarded_moves(spec: MachineSpec) -> dict[tuple[str, str], str]:
    """(state, trigger) -> dest, where the first transition for that trigger leaving that
    state (in written order, "*" standing for every state, as `transitions` adds them) has
    no `conditions` or `unless`: `transitions` takes it without asking anything else."""
    first: dict[tuple[str, str], tuple[str, bool]] = {}
    for t in spec.transitions:
        for source in (list(spec.states) if t.source == ["*"] else t.source):
            first.setdefault((source, t.trigger), (t.dest, bool(t.conditions or t.unless)))
    return {key: dest for key, (dest, guarded) in first.items() if not guarded}


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


_Wanted = Literal["callable", "exception"]


def _import_paths(raw: Any) -> Iterator[tuple[Loc, str, _Wanted]]:
    """(loc, import path, what it must be) for every well-formed import path in `raw`."""
    if not isinstance(raw, dict):
        return
    found: list[tuple[Loc, Any, _Wanted]] = [((key,), raw.get(key), "callable") for key in ("on_escalate", "on_cancel")]
    states = raw["states"] if isinstance(raw.get("states"), dict) else {}
    for name, fields in states.items():
        if not isinstance(fields, dict):
            continue
        for key in ("action", "on_escalate", "on_cancel"):
            found.append((("states", name, key), fields.get(key), "callable"))
        retries = fields.get("non_retryable")
        for i, entry in enumerate(retries if isinstance(retries, list) else []):
            found.append((("states", name, "non_retryable", i), entry, "exception"))
    transitions = raw["transitions"] if isinstance(raw.get("transitions"), list) else []
    for i, t in enumerate(transitions):
        for key in ("conditions", "unless"):
            value = t.get(key) if isinstance(t, dict) else None
            paths = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            for j, path in enumerate(paths):
                loc: Loc = ("transitions", i, key) if isinstance(value, str) else ("transitions", i, key, j)
                found.append((loc, path, "callable"))
    yield from ((loc, p, want) for loc, p, want in found
                if isinstance(p, str) and IMPORT_PATH.match(p))


def find_child_machine(ref: str, base_dir: Path | None) -> Path:
    """The file a spawn's `machine` names: a name looked up beside the spawning machine's
    file (as ./machines is for the CLI), or a path relative to that folder."""
    folder = Path(base_dir) if base_dir is not None else Path("machines")
    if ref.endswith(SUFFIXES) or "/" in ref:
        return find_machine(folder / ref, folder)
    return find_machine(ref, folder)


_spawn_loading: set[str] = set()  # files being loaded for a spawn check: a machine may spawn itself


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
                if key == me or key in _spawn_loading:
                    continue  # the same machine (or one being checked): loaded already
                _spawn_loading.add(key)
                try:
                    load_file(child)
                finally:
                    _spawn_loading.discard(key)
            except DefinitionError as exc:
                errors = [p for p in exc.problems if p.severity == "error"]
                # Not found: its message says so; found but invalid: where in that file.
                detail = (errors[0].message if errors[0].line is None else str(errors[0])) if errors else "invalid"
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                findings.append((loc, f"spawn machine '{ref}': {detail}{more}; "
                                      "name a machine file beside this one, or a path relative to it", "error"))
    return findings


# --- Import paths ----------------------------------------------------------------------

def resolve_import(import_path: str, base_dir: Path | None) -> Any:
    """The attribute named by `module:attribute`, with `base_dir` first on sys.path."""
    module_name, _, attribute = import_path.partition(":")
    put_first_on_path(base_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            where = f"{Path(base_dir).resolve()}/ or the installed packages" if base_dir else "the installed packages"
            raise ImportPathError(import_path, f"no module '{exc.name}' in {where}") from exc
        raise ImportPathError(import_path, f"importing '{module_name}' failed: {exc}") from exc
    except Exception as exc:  # the module's own code failed: say so, with its error
        raise ImportPathError(
            import_path, f"importing '{module_name}' failed: {type(exc).__name__}: {exc}") from exc
    _check_origin(import_path, module, base_dir)
    try:
        return getattr(module, attribute)
    except AttributeError:
        names = [n for n in vars(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attribute, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ImportPathError(import_path, f"module '{module_name}' has no '{attribute}'{hint}") from None


def _check_origin(import_path: str, module: Any, base_dir: Path | None) -> None:
    # sys.modules is one namespace per process: two machine folders with an
    # `actions.py` each would silently share the first one imported.
    if base_dir is None:
        return
    top = module.__name__.split(".")[0]
    folder = Path(base_dir).resolve()
    local = folder / f"{top}.py" if (folder / f"{top}.py").exists() else folder / top
    origin = getattr(sys.modules.get(top), "__file__", None)
    if local.exists() and origin and not Path(origin).resolve().is_relative_to(folder):
        raise ImportPathError(
            import_path, f"module '{top}' was already imported from {origin}, not from {folder}; "
                         "give the module a name of its own")


