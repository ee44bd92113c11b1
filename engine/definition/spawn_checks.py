"""Checks of spawning states across the machine: where the join leads, what the state is.

Like engine.definition.checks they read the raw definition leniently (pydantic reports
malformed fields), so every mistake is listed in one pass. Whether a spawn's machines
exist is checked where files are known (engine.definition.loader, `_check_spawn_machines`).
"""

from __future__ import annotations

from typing import Any

from engine.definition.spawn_spec import FAILED, JOINED

Finding = tuple[tuple[str | int, ...], str, Any]


def check_spawns(states: dict[str, dict[str, Any]], leaves: Any) -> list[Finding]:
    """Findings for every state with a `spawn` block. `leaves(trigger, state)`: does a
    transition on `trigger` leave `state`?"""
    found: list[Finding] = []
    for name, fields in states.items():
        if not isinstance(fields.get("spawn"), dict):
            continue
        loc = ("states", name, "spawn")
        if fields.get("final") is True or fields.get("action"):
            what = "final" if fields.get("final") is True else "a task (it has an action)"
            found.append((loc, f"state '{name}' spawns children but is {what}; a spawning state has "
                               "no action and is not final: it waits for its children", "error"))
            continue
        if not leaves(JOINED, name):
            found.append((loc, f"spawning state '{name}' has no transition on '{JOINED}': its join could "
                               f"never move the run; add {{trigger: {JOINED}, source: {name}, dest: ...}}",
                          "error"))
        if not leaves(FAILED, name):
            found.append((loc, f"spawning state '{name}' has no transition on '{FAILED}': if a child is "
                               "cancelled and the join can no longer hold, the run escalates", "warning"))
    return found
