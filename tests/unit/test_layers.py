"""The folders are the architecture: each layer imports only the layers below it.

    journal  <-  engine (errors, faults, durable, home)  <-  engine.definition
             <-  engine.trust (people, signatures)  <-  engine.run  <-  engine.supervise  <-  engine.api
             <-  engine.view  <-  engine.cli

Every import counts, including the lazy ones inside functions (read with `ast`, not by
importing). `engine/__init__.py` is the package's public face (`engine.Fire`) and may
reach any layer (it loads `engine.api`'s `Ratchet` lazily: `import engine` stays light).
The Python API (engine.api) sits above the supervisor's parts it shares with the CLI
(sending, status) and below the CLI, which never needs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["journal", "engine", "engine.definition", "engine.trust", "engine.run", "engine.supervise", "engine.api",
          "engine.view", "engine.cli"]


def _layer(module: str) -> int:
    """Index in LAYERS of the deepest layer `module` belongs to."""
    found = [i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")]
    return max(found)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from engine import inbox` names a module through its package
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in ("engine", "journal")]


MODULES = sorted(p for top in ("journal", "engine") for p in (ROOT / top).rglob("*.py"))
NAMES = {_module_name(p) for p in MODULES}


def _target(name: str) -> str:
    """The module an imported name lives in (`from pkg.mod import Name` -> pkg.mod)."""
    while name not in NAMES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def test_every_module_is_in_a_layer() -> None:
    assert MODULES, "no modules found"
    assert {_module_name(p).split(".")[0] for p in MODULES} == {"engine", "journal"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_point_down(path: Path) -> None:
    module = _module_name(path)
    if module == "engine":
        return  # the public face
    own = _layer(module)
    upward = []
    for line, name in _imports(path):
        target = _target(name)
        if target == "engine":
            upward.append(f"line {line}: {name} (the public face is for users, not for layers)")
        elif _layer(target) > own:
            upward.append(f"line {line}: {name} ({LAYERS[_layer(target)]} is above {LAYERS[own]})")
    assert not upward, f"{path.relative_to(ROOT)} imports upward:\n" + "\n".join(upward)


def test_cli_commands_import_no_other_command() -> None:
    """Command modules share helpers (app, options, timeline, progress), never each other's code."""
    shared = {"engine.cli", "engine.cli.app", "engine.cli.options", "engine.cli.timeline", "engine.cli.progress"}
    shared |= {"engine.cli.launch", "engine.cli.supervising"}  # the console script, and `supervise`'s start it shares
    commands = [p for p in (ROOT / "engine" / "cli").glob("*.py") if _module_name(p) not in shared]
    assert commands
    for path in commands:
        imported = {_target(name) for _, name in _imports(path)}
        others = {name for name in imported
                  if name.startswith("engine.cli.") and name not in shared and name != _module_name(path)}
        assert not others, f"{path.relative_to(ROOT)} imports another command module: {sorted(others)}"
