"""Draw a machine as a Mermaid state diagram (stateDiagram-v2 text).

The initial state comes from [*], final states go to [*], each state carries a short
description of its kind, and each edge is labelled with its trigger and guards. One
state can be highlighted: where a run is now (or, in red, where it is escalated).
State names match ^[a-z][a-z0-9_]*$, so they are valid Mermaid ids as they are.
"""

from __future__ import annotations

from engine.definition.durations import format_duration
from engine.definition.spec import MachineSpec, StateSpec

CURRENT_STYLE = "fill:#ffe082,stroke:#e65100,stroke-width:3px"
ESCALATED_STYLE = "fill:#ef9a9a,stroke:#b71c1c,stroke-width:3px"


def to_mermaid(spec: MachineSpec, *, current: str | None = None, escalated: bool = False,
               comment: str | None = None) -> str:
    """The diagram's text. `current` marks one state; `escalated` draws it as escalated."""
    lines = ["stateDiagram-v2"]
    lines.append(f"    %% {spec.name} v{spec.version} {spec.hash()}")
    if comment:
        lines.append(f"    %% {comment}")
    for name, state in spec.states.items():
        # Two description lines: Mermaid draws the name as a title above the details.
        lines.append(f"    {name}: {name}")
        lines.append(f"    {name}: {_describe(state)}")
    lines.append(f"    [*] --> {spec.initial}")
    for t in spec.transitions:
        sources = [n for n, s in spec.states.items() if not s.final] if t.source == ["*"] else t.source
        for source in sources:
            lines.append(f"    {source} --> {t.dest}: {_label(t.trigger, t.conditions, t.unless)}")
    for name, state in spec.states.items():
        if state.final:
            lines.append(f"    {name} --> [*]")
    if current is not None:
        style = "escalated" if escalated else "current"
        lines.append(f"    classDef {style} {ESCALATED_STYLE if escalated else CURRENT_STYLE}")
        lines.append(f"    class {current} {style}")
    return "\n".join(lines) + "\n"


def _describe(state: StateSpec) -> str:
    # Plain words only: a colon, brace or quote could end Mermaid's description text.
    if state.kind == "final":
        return f"final, {state.outcome}" if state.outcome else "final"
    parts: list[str] = [state.kind]
    if state.kind == "waiting":
        if state.approvers:
            parts.append("approvers " + " ".join(state.approvers))
        parts.append(f"timeout {format_duration(state.timeout)}" if state.timeout else "no deadline")
    else:
        parts.append((state.action or "").partition(":")[2])  # a task always has an action
        if state.retry and state.retry.attempts > 1:
            parts.append(f"{state.retry.attempts} attempts")
        if not state.idempotent:
            parts.append("not idempotent")
    if state.on_cancel:  # a compensation of its own: worth seeing where it applies
        parts.append(f"on cancel {state.on_cancel.partition(':')[2]}")
    return ", ".join(parts)


def _label(trigger: str, conditions: list[str], unless: list[str]) -> str:
    guards = [f"if {p.split(':')[1]}" for p in conditions] + [f"unless {p.split(':')[1]}" for p in unless]
    return " ".join([trigger, *guards])
