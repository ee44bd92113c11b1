"""`Machine.next_state` answers an unguarded move from a plain table: it must give exactly
what the `transitions` statechart gives, and leave every guarded question to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definition.loader import _unguarded_moves, load_file
from engine.definition.spec import MachineSpec, StateSpec, TransitionSpec
from engine.definition.statechart import Statechart

MACHINES = Path(__file__).resolve().parents[2] / "machines"


def never(data: dict) -> bool:
    return False


def mixed() -> MachineSpec:
    """Guards before and after unguarded moves, "*" sources before and after explicit ones."""
    return MachineSpec(
        name="mixed", version=1, initial="a",
        states={"a": StateSpec(action="m:f"), "b": StateSpec(timeout="1h"), "c": StateSpec(action="m:f"),
                "done": StateSpec(final=True), "stop": StateSpec(final=True)},
        transitions=[TransitionSpec(trigger="ok", source="a", dest="b", conditions=["m:never"]),
                     TransitionSpec(trigger="ok", source="a", dest="c"),
                     TransitionSpec(trigger="ok", source="c", dest="done"),
                     TransitionSpec(trigger="ok", source="c", dest="stop"),
                     TransitionSpec(trigger="halt", source="*", dest="stop"),
                     TransitionSpec(trigger="halt", source="b", dest="done"),
                     TransitionSpec(trigger="go", source="b", dest="c", unless=["m:never"]),
                     TransitionSpec(trigger="go", source="*", dest="done")])


def specs() -> list[MachineSpec]:
    return [mixed(), *(load_file(p).spec for p in sorted(MACHINES.glob("*.yaml")))]


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_the_table_gives_what_the_statechart_gives_and_holds_no_guarded_move(spec):
    chart = Statechart(spec, lambda _path: never)
    table = _unguarded_moves(spec)
    triggers = {t.trigger for t in spec.transitions}
    for state in spec.states:
        for trigger in triggers:
            if (state, trigger) in table:
                assert table[(state, trigger)] == chart.next_state(state, trigger, {}), (state, trigger)
    guarded_first = {("a", "ok"), ("b", "go")} if spec.name == "mixed" else set()
    assert not guarded_first & set(table)


def test_the_first_written_move_wins_as_in_transitions():
    table = _unguarded_moves(mixed())
    assert table[("c", "ok")] == "done"  # not the later c -> stop
    assert table[("b", "halt")] == "stop"  # the "*" move was written first
    assert table[("done", "halt")] == "stop"  # transitions adds "*" moves to final states too
