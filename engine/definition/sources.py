"""Where a definition comes from: its raw data, and how to point at a place in it.

A YAML file is composed into nodes first (they keep their start line), then built into
plain data; a path such as `("transitions", 3, "dest")` is mapped back to a line by
walking those nodes. PyYAML keeps the last of duplicate keys silently, so duplicates are
found on the nodes too. A Python module is executed and its `machine` attribute read;
its places are named by object path (`states.charge.retry.backoff`), and an error raised
while it builds its objects is located by the line of the module in the traceback.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from engine.definition.checks import Loc
from engine.definition.machine import put_first_on_path
from engine.definition.spec import MachineSpec, RetryPolicy, StateSpec, TransitionSpec
from engine.errors import NotAMachineError
from engine.problem import Problem, Severity

NO_DATA = object()


@dataclass
class Source:
    """A definition as read: raw data, how to locate a path in it, and problems so far."""

    where: str
    raw: Any = NO_DATA
    line_of: Callable[[Loc], int | None] = lambda loc: None
    problems: list[Problem] = field(default_factory=list)

    def problem(self, loc: Loc, message: str, severity: Severity = "error") -> Problem:
        prefix = f"{dotted(loc)}: " if loc else ""
        return Problem(self.where, self.line_of(loc), prefix + message, severity)


_FIELDS = sorted({name for model in (MachineSpec, StateSpec, TransitionSpec, RetryPolicy)
                  for name in model.model_fields})


def describe(error: ErrorDetails) -> str:
    """A pydantic error as one readable phrase."""
    kind, loc = error["type"], error["loc"]
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _FIELDS, n=1)
        return "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")
    if kind == "missing":
        return "missing (required)"
    return error["msg"]


def dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        if part == "[key]":
            text += " (name)"
        elif isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# libyaml's composer is ~10x faster and keeps the same node marks (line numbers).
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, content: bytes | None = None) -> Source:
    """Parse a YAML machine file (`content`: its bytes, if the caller already read them)."""
    source = Source(where=str(path))
    try:
        text = (path.read_bytes() if content is None else content).decode("utf-8")
        root = yaml.compose(text, Loader=_COMPOSER)
        if root is None:
            source.problems.append(Problem(str(path), None, "empty file: expected a machine definition"))
            return source
        source.raw = yaml.SafeLoader("").construct_document(root)
    except OSError as exc:
        source.problems.append(Problem(str(path), None, f"cannot read: {exc.strerror or exc}"))
        return source
    except UnicodeDecodeError as exc:
        source.problems.append(Problem(str(path), None, f"not UTF-8 text ({exc.reason})"))
        return source
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        source.problems.append(Problem(str(path), line, f"invalid YAML: {exc.problem or exc.context}"))
        return source
    source.line_of = lambda loc: _line_of(root, loc)
    source.problems += [Problem(str(path), line, message) for line, message in _duplicate_keys(root)]
    return source


def _line_of(root: yaml.Node, loc: Loc) -> int:
    """The 1-based line of the deepest node `loc` reaches (a key's line for a mapping entry)."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # The last duplicate wins, as in the constructed data.
            match = [(k, v) for k, v in node.value if _key_is(k, part)]
            if not match:
                break
            key, node = match[-1]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _key_is(node: yaml.Node, part: Any) -> bool:
    if not isinstance(node, yaml.ScalarNode):
        return False
    if isinstance(part, str):
        return node.value == part and node.tag == "tag:yaml.org,2002:str"
    # A key YAML read as a bool or number (`on:` is True): compare constructed values.
    value = yaml.SafeLoader("").construct_object(node)
    return type(value) is type(part) and value == part


def _duplicate_keys(root: yaml.Node) -> list[tuple[int, str]]:
    """PyYAML keeps the last of duplicate keys silently: find them on the composed nodes."""
    found, stack, visited = [], [root], set()
    while stack:
        node = stack.pop()
        if id(node) in visited:  # aliases share nodes
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    line = key.start_mark.line + 1
                    if key.value in first:
                        found.append((line, f"duplicate key '{key.value}' (first at line "
                                            f"{first[key.value]}); YAML would keep only this one"))
                    else:
                        first[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(found)


def _assigns_machine(tree: ast.Module) -> bool:
    """True if the module assigns `machine` at its top level (read, not run)."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        if any(isinstance(t, ast.Name) and t.id == "machine" for t in targets):
            return True
    return False


def read_python(path: Path) -> Source:
    source = Source(where=str(path))
    if not path.is_file():
        source.problems.append(Problem(str(path), None, "no such file"))
        return source
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        source.problems.append(Problem(str(path), exc.lineno, f"syntax error: {exc.msg}"))
        return source
    if not _assigns_machine(tree):
        # Not executed: `ratchet validate some/folder` must not run every script in it.
        raise NotAMachineError([Problem(str(path), None,
                                        "defines no module attribute 'machine' (a MachineSpec)")])
    module_name = f"_ratchet_machine_{abs(hash(str(path.resolve())))}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # never for a .py file; said plainly if it happens
        source.problems.append(Problem(str(path), None, "cannot load: not a Python module file"))
        return source
    module = importlib.util.module_from_spec(spec)
    put_first_on_path(path.parent)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        source.problems.append(Problem(str(path), exc.lineno, f"syntax error: {exc.msg}"))
        return source
    except ValidationError as exc:
        line = _line_in(path, exc)
        for error in exc.errors():
            where = ".".join([exc.title, dotted(tuple(error["loc"]))]).rstrip(".")
            source.problems.append(Problem(str(path), line, f"{where}: {describe(error)}"))
        return source
    except Exception as exc:  # the module's own code failed while defining the machine
        source.problems.append(
            Problem(str(path), _line_in(path, exc), f"cannot load: {type(exc).__name__}: {exc}"))
        return source
    machine = getattr(module, "machine", None)
    if machine is None:
        raise NotAMachineError([Problem(str(path), None,
                                        "defines no module attribute 'machine' (a MachineSpec)")])
    if isinstance(machine, MachineSpec):
        source.raw = machine.canonical()
    elif isinstance(machine, dict):
        source.raw = machine
    else:
        source.problems.append(Problem(
            str(path), None, f"'machine' is a {type(machine).__name__}; expected a MachineSpec"))
    return source


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of `path` where `exc` was raised (the innermost frame in that file)."""
    target = str(path.resolve())
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if Path(frame.filename).resolve() == Path(target)]
    return lines[-1] if lines else None
