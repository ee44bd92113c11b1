"""The pinned form (engine.definition.pinned) mirrors the pydantic models field for field,
and a machine read from a journal's pinned definition answers as the validated one does.

A run that continues reads its definition with msgspec, not pydantic: a field added to a
model and not to its mirror (or given another default) would silently run old runs
differently, so the two are compared here, and on every definition shipped or pinned in
the fixture journals.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from engine.definition.loader import load_machine, machine_from_definition
from engine.definition.machine import machine_from_pinned
from engine.definition.pinned import (
    PinnedQuorum,
    PinnedRetry,
    PinnedSpawn,
    PinnedSpec,
    PinnedState,
    PinnedTransition,
    read_pinned,
)
from engine.definition.spawn_spec import SpawnSpec
from engine.definition.spec import MachineSpec, RetryPolicy, StateSpec, TransitionSpec
from engine.errors import DefinitionError
from journal import RunStarted, pinned_definition, read

ROOT = Path(__file__).resolve().parents[2]
MACHINES = sorted(p for p in (ROOT / "machines").iterdir() if p.suffix in (".yaml", ".py") and "_actions" not in p.name)
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "journals").glob("*.jsonl"))


@pytest.mark.parametrize(("mirror", "model"), [(PinnedRetry, RetryPolicy), (PinnedSpawn, SpawnSpec),
                                               (PinnedState, StateSpec), (PinnedTransition, TransitionSpec),
                                               (PinnedSpec, MachineSpec)], ids=lambda c: c.__name__)
def test_each_mirror_has_the_models_fields_and_defaults(mirror, model):
    def ours(f: msgspec.structs.FieldInfo) -> object:
        return f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default

    mine = {f.name: ours(f) for f in msgspec.structs.fields(mirror)}
    theirs = {name: field.get_default(call_default_factory=True) if not field.is_required() else msgspec.NODEFAULT
              for name, field in model.model_fields.items()}
    assert mine == theirs


def _definitions() -> list[tuple[str, dict]]:
    found = [(p.name, load_machine(p).definition) for p in MACHINES]
    for path in FIXTURES:
        first = read(path).records[0]
        assert isinstance(first, RunStarted)
        found.append((path.name, pinned_definition(first)))
    return found


@pytest.mark.parametrize(("where", "definition"), _definitions(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_pinned_definition_reads_as_pydantic_reads_it(where, definition):
    validated = MachineSpec.model_validate(definition)
    assert msgspec.to_builtins(read_pinned(definition)) == validated.model_dump(mode="json")
    pinned, checked = machine_from_pinned(definition, ROOT / "machines"), machine_from_definition(definition, None,
                                                                                                 check_imports=False)
    assert (pinned.hash, pinned.definition, pinned.name, pinned.version) == (
        checked.hash, checked.definition, checked.name, checked.version)
    for state in validated.states:
        assert pinned.triggers_from(state) == checked.triggers_from(state)
        assert pinned.state(state) == checked.state(state)
    assert pinned.spec == validated  # validated on demand, for the commands that show it


def test_a_quorum_join_reads_as_an_object():
    spawn = msgspec.convert({"branches": {"a": "m", "b": "m"}, "join": {"quorum": 2}}, PinnedSpawn)
    assert spawn.join == PinnedQuorum(2) and spawn.needed(2) == 2 and spawn.join_label() == "quorum 2"
    assert msgspec.convert({"for_each": "xs", "machine": "m", "join": "any"}, PinnedSpawn).needed(5) == 1


def test_a_damaged_pinned_definition_is_a_definition_error():
    definition = json.loads(json.dumps(load_machine(MACHINES[0]).definition))
    definition["states"] = "not a mapping"
    with pytest.raises(DefinitionError, match="pinned definition: not a canonical definition"):
        machine_from_pinned(definition, None)
