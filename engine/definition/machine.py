"""`Machine`: a definition ready to run, validated or pinned, and the code it names.

A machine comes from one of two places. engine.definition.loader validates what people
write (pydantic, the graph checks, its import paths resolved) and builds one; a run that
continues builds one from the definition pinned in its journal (`machine_from_pinned`),
which was validated when the run started, so it is only read (engine.definition.pinned),
never validated again: continuing runs imports neither pydantic nor the checks.
Either way the engine asks the same questions (engine.run.machine.RunnableMachine) of
the same objects, the pinned form's.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec

from engine.definition.fingerprint import fingerprints, module_of
from engine.definition.pinned import PinnedSpec, PinnedState, read_pinned
from engine.errors import ConditionError, DefinitionError, ImportPathError
from engine.problem import Problem
from journal import hash_definition

if TYPE_CHECKING:
    from engine.definition.spec import MachineSpec
    from engine.definition.statechart import Statechart

Loc = tuple[str | int, ...]  # where in a definition (as engine.definition.checks.Loc)
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")  # package.module:function


class Machine:
    """A validated machine, ready to run: its spec, its pinned form, its resolved code."""

    def __init__(self, spec: MachineSpec | None, *, base_dir: Path | None = None,
                 source: Path | None = None, warnings: list[Problem] | None = None,
                 pinned: tuple[dict[str, Any], PinnedSpec] | None = None) -> None:
        """From a validated `spec`, or (with `spec` None) from `pinned`: a canonical
        definition and its typed form (machine_from_pinned)."""
        self._spec = spec
        self.base_dir = base_dir
        self.source = source
        self.warnings = list(warnings or [])
        if spec is not None:
            self.definition = spec.canonical()
            self.runtime = read_pinned(self.definition)
        elif pinned is not None:
            self.definition, self.runtime = pinned
        else:
            raise TypeError("a Machine needs a spec or a pinned definition")  # a bug in the caller
        self.pinned = msgspec.Raw(msgspec.json.encode(self.definition))  # as run_started stores it
        self.hash = hash_definition(self.definition)  # MachineSpec.hash(), without a second canonical()
        self._resolved: dict[str, Callable[..., Any]] = {}
        self._chart: Statechart | None = None  # built on first use
        self._direct: dict[tuple[str, str], str] | None = None  # see next_state
        self._resolved_source: str | None = None  # see resolved_source
        self._code: dict[str, str] | None = None  # see `code`

    @property
    def spec(self) -> MachineSpec:
        """The pydantic model (what `ratchet graph` and `validate` read); for a pinned
        machine, validated from its definition on first use (pydantic is imported then)."""
        if self._spec is None:
            from engine.definition.spec import MachineSpec

            self._spec = MachineSpec.model_validate(self.definition)
        return self._spec

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def version(self) -> int | str:
        return self.runtime.version

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

    def state(self, name: str) -> PinnedState:
        try:
            return self.runtime.states[name]
        except KeyError:
            raise KeyError(f"machine '{self.name}' has no state '{name}'") from None

    def triggers_from(self, state: str) -> list[str]:
        """Triggers with a transition leaving `state` (including "*" ones), in written order."""
        triggers = [t.trigger for t in self.runtime.transitions
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
            self._direct = _unguarded_moves(self.runtime)
        dest = self._direct.get((state, trigger))
        if dest is not None:
            return dest
        if self._chart is None:
            from engine.definition.statechart import Statechart  # `transitions`: only for guarded moves

            self._chart = Statechart(self.runtime, self._predicate)
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
        return self.state(state).on_escalate or self.runtime.on_escalate

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
        return f"<Machine {self.name} v{self.version} {self.hash[:19]}>"


def _unguarded_moves(spec: MachineSpec | PinnedSpec) -> dict[tuple[str, str], str]:
    """(state, trigger) -> dest, where the first transition for that trigger leaving that
    state (in written order, "*" standing for every state, as `transitions` adds them) has
    no `conditions` or `unless`: `transitions` takes it without asking anything else."""
    first: dict[tuple[str, str], tuple[str, bool]] = {}
    for t in spec.transitions:
        for source in (list(spec.states) if t.source == ["*"] else t.source):
            first.setdefault((source, t.trigger), (t.dest, bool(t.conditions or t.unless)))
    return {key: dest for key, (dest, guarded) in first.items() if not guarded}


def machine_from_pinned(definition: dict[str, Any], base_dir: Path | None) -> Machine:
    """The machine of a run, from the canonical definition its journal pins (validated
    when the run started or was upgraded: read, not validated again). Its code is
    resolved when first needed. A DefinitionError if the definition is not canonical."""
    try:
        runtime = read_pinned(definition)
    except msgspec.ValidationError as exc:
        raise DefinitionError([Problem("pinned definition", None, f"not a canonical definition: {exc}")]) from exc
    return Machine(None, base_dir=base_dir, pinned=(definition, runtime))


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


def put_first_on_path(folder: Path | None) -> None:
    # Kept on sys.path (not removed after the import): an action may import its
    # neighbours lazily, at call time.
    if folder is None:
        return
    entry = str(Path(folder).resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()
