"""Draw a machine as a Mermaid state diagram (stateDiagram-v2 text).

The initial state comes from [*], final states go to [*], each state carries a short
description of its kind, and each edge is labelled with its trigger and guards. One
state can be highlighted: where a run is now (or, in red, where it is escalated).
State names match ^[a-z][a-z0-9_]*$, so they are valid Mermaid ids as they are.
"""

from __future__ import annotations

from engine.definition.durations import format_duration
from engine.definition.spawn_spec import FAILED, JOINED, SpawnSpec
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
    for name, state in spec.states.items():
        if state.spawn is not None:
            lines.extend(_spawn(name, state.spawn))
    for t in spec.transitions:
        sources = [n for n, s in spec.states.items() if not s.final] if t.source == ["*"] else t.source
        for source in sources:
            joins = t.trigger in (JOINED, FAILED) and spec.states[source].spawn is not None
            start = f"{source}__join" if joins else source  # the join fires them, from its bar
            lines.append(f"    {start} --> {t.dest}: {_label(t.trigger, t.conditions, t.unless)}")
    for name, state in spec.states.items():
        if state.final:
            lines.append(f"    {name} --> [*]")
    if current is not None:
        style = "escalated" if escalated else "current"
        lines.append(f"    classDef {style} {ESCALATED_STYLE if escalated else CURRENT_STYLE}")
        lines.append(f"    class {current} {style}")
    return "\n".join(lines) + "\n"


def _spawn(name: str, spawn: SpawnSpec) -> list[str]:
    """A spawning state forks into its children (a fork bar, one box per branch or one for
    the for_each) and their join bar, from which `joined` and `failed` leave."""
    fork, join = f"{name}__fork", f"{name}__join"
    lines = [f"    state {fork} <<fork>>", f"    state {join} <<join>>", f"    {name} --> {fork}: spawn"]
    limit = f", at most {spawn.max_parallel} at once" if spawn.max_parallel else ""
    if spawn.branches is not None:
        for branch, machine in spawn.branches.items():
            box = f"{name}__{branch}"
            lines += [f"    {box}: {branch}", f"    {box}: child run of {_plain(machine)}",
                      f"    {fork} --> {box}", f"    {box} --> {join}"]
    else:
        box = f"{name}__each"
        lines += [f"    {box}: each of {spawn.for_each}",
                  f"    {box}: child runs of {_plain(spawn.machine or '')}{limit}",
                  f"    {fork} --> {box}: for each", f"    {box} --> {join}: join {spawn.join_label()}"]
    return lines


def _plain(text: str) -> str:
    # A machine path's slashes and dots are fine in a description; a colon is not.
    return text.replace(":", " ")


def _describe(state: StateSpec) -> str:
    # Plain words only: a colon, brace or quote could end Mermaid's description text.
    if state.kind == "final":
        return f"final, {state.outcome}" if state.outcome else "final"
    parts: list[str] = [state.kind if state.spawn is None else "spawns children"]
    if state.spawn is not None:
        parts.append(f"join {state.spawn.join_label()}")
        if state.spawn.let_finish:
            parts.append("lets them finish")
        if state.spawn.escalated_children == "fail":
            parts.append("an escalated child fails it")
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
