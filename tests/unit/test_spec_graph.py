"""Mermaid diagrams of machines (stateDiagram-v2)."""

from __future__ import annotations

from pathlib import Path

from engine.definition.loader import load_file
from engine.definition.mermaid import to_mermaid
from engine.definition.spec import MachineSpec, StateSpec, TransitionSpec

MACHINES = Path(__file__).resolve().parents[2] / "machines"


def test_renewal_review_diagram():
    text = to_mermaid(load_file(MACHINES / "renewal_review.yaml").spec)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "stateDiagram-v2"
    assert "[*] --> draft" in lines
    assert "sent --> [*]" in lines and "rejected --> [*]" in lines
    assert "review --> send: approve" in lines
    assert "review: review" in lines and "review: waiting, approvers alice bob, timeout 2d" in lines
    assert "send: send" in lines and "send: task, send_email, not idempotent" in lines
    assert not any(line.startswith("class ") for line in lines)


def test_guards_label_edges_and_star_sources_expand_to_non_final_states():
    spec = MachineSpec(
        name="g", version=1, initial="a",
        states={"a": StateSpec(action="m:f"), "b": StateSpec(timeout="1h"),
                "done": StateSpec(final=True), "stop": StateSpec(final=True, outcome="stopped")},
        transitions=[TransitionSpec(trigger="ok", source="a", dest="b", conditions=["m:big"], unless=["m:vip"]),
                     TransitionSpec(trigger="ok", source="a", dest="done"),
                     TransitionSpec(trigger="timeout", source="b", dest="done"),
                     TransitionSpec(trigger="halt", source="*", dest="stop")])
    lines = [line.strip() for line in to_mermaid(spec).splitlines()]
    assert "a --> b: ok if big unless vip" in lines
    assert "a --> stop: halt" in lines and "b --> stop: halt" in lines
    assert "done --> stop: halt" not in lines
    assert "stop: final, stopped" in lines


def test_current_and_escalated_states_are_highlighted():
    spec = load_file(MACHINES / "invoice.py").spec
    current = to_mermaid(spec, current="charge").splitlines()
    assert current[-2].strip().startswith("classDef current ") and current[-1].strip() == "class charge current"
    escalated = to_mermaid(spec, current="charge", escalated=True).splitlines()
    assert escalated[-1].strip() == "class charge escalated"
