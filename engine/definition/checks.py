"""Checks across a machine's graph: unknown, unreachable and dead-end states, shadowed
transitions, unhandled timeouts, waits with no deadline.

They read the raw definition (the dict from YAML, or a Python machine's canonical form)
defensively, so they still run where pydantic rejected some fields: a user sees every
mistake in one pass. Each finding is `(loc, message, severity)`, where `loc` is a path
into the definition such as `("transitions", 3, "dest")`; engine.definition.loader turns it into
`file:line` or an object path.
"""

from __future__ import annotations

import difflib
from collections import deque
from typing import Any

from engine.definition.durations import format_duration
from engine.definition.spawn_checks import check_spawns
from engine.definition.spec import TIMEOUT
from engine.problem import Severity

Loc = tuple[str | int, ...]
Finding = tuple[Loc, str, Severity]
Fields = dict[str, Any]  # one state's fields, unvalidated


def check_graph(raw: Any) -> list[Finding]:
    """Every graph-level mistake in `raw` (an unvalidated machine definition)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("states"), dict):
        return []  # pydantic reports the missing or malformed mapping
    states = {name: (fields if isinstance(fields, dict) else {})
              for name, fields in raw["states"].items() if isinstance(name, str)}
    edges = _edges(raw.get("transitions"))
    findings = _unknown_states(raw.get("initial"), states, edges)
    if not findings:
        # A misspelt state name makes its real state look unreachable or stuck: report
        # the cause alone rather than a cascade of consequences.
        findings += _dead_ends(states, edges)
        findings += _unreachable(raw.get("initial"), states, edges)
    findings += _leaving_final_states(states, edges)
    findings += _shadowed(states, edges)
    findings += _unhandled_timeouts(states, edges)
    findings += _endless_waits(states)
    findings += _unknown_quorum_triggers(states, edges)
    findings += check_spawns(states, lambda trigger, state: any(
        e.trigger == trigger and e.leaves(state, states) for e in edges))
    return findings


class _Edge:
    """One transition, read leniently: fields that are not usable are None."""

    def __init__(self, index: int, raw: dict[str, Any]) -> None:
        self.index = index
        trigger, source, dest = raw.get("trigger"), raw.get("source"), raw.get("dest")
        self.trigger: str | None = trigger if isinstance(trigger, str) else None
        source = [source] if isinstance(source, str) else source
        self.sources: list[str] = [s for s in source if isinstance(s, str)] if isinstance(source, list) else []
        self.dest: str | None = dest if isinstance(dest, str) else None
        self.guarded = bool(raw.get("conditions") or raw.get("unless"))
        self.label = f"transition '{self.trigger}'" if self.trigger else f"transition #{index + 1}"

    def leaves(self, state: str, states: dict[str, Fields]) -> bool:
        if "*" in self.sources:
            return not _is_final(states.get(state, {}))
        return state in self.sources


def _edges(raw: Any) -> list[_Edge]:
    if not isinstance(raw, list):
        return []
    return [_Edge(i, t) for i, t in enumerate(raw) if isinstance(t, dict)]


def _is_final(fields: Fields) -> bool:
    return fields.get("final") is True


def _kind(fields: Fields) -> str:
    if _is_final(fields):
        return "final"
    return "task" if fields.get("action") else "waiting"


def _unknown(name: str, states: dict[str, Fields]) -> str:
    close = difflib.get_close_matches(name, list(states), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f"; known states: {', '.join(states)}"
    return f"unknown state '{name}'{hint}"


def _unknown_states(initial: Any, states: dict[str, Fields], edges: list[_Edge]) -> list[Finding]:
    found: list[Finding] = []
    if isinstance(initial, str) and initial not in states:
        found.append((("initial",), f"initial state: {_unknown(initial, states)}", "error"))
    for edge in edges:
        for name in edge.sources:
            if name != "*" and name not in states:
                found.append((("transitions", edge.index, "source"),
                              f"{edge.label} leaves {_unknown(name, states)}", "error"))
        if edge.dest is not None and edge.dest not in states:
            found.append((("transitions", edge.index, "dest"),
                          f"{edge.label} targets {_unknown(edge.dest, states)}", "error"))
    return found


def _leaving_final_states(states: dict[str, Fields], edges: list[_Edge]) -> list[Finding]:
    return [(("transitions", edge.index, "source"),
             f"{edge.label} leaves final state '{name}': a run ends there", "error")
            for edge in edges for name in edge.sources
            if name in states and _is_final(states[name])]


def _dead_ends(states: dict[str, Fields], edges: list[_Edge]) -> list[Finding]:
    return [(("states", name),
             f"state '{name}' has no way out and is not final; "
             "add a transition from it or mark it 'final: true'", "error")
            for name, fields in states.items()
            if not _is_final(fields) and not any(e.leaves(name, states) for e in edges)]


def _unreachable(initial: Any, states: dict[str, Fields], edges: list[_Edge]) -> list[Finding]:
    if not isinstance(initial, str) or initial not in states:
        return []  # reported as an unknown initial state already
    seen, queue = {initial}, deque([initial])
    while queue:
        state = queue.popleft()
        for edge in edges:
            dest = edge.dest
            if dest is not None and dest in states and dest not in seen and edge.leaves(state, states):
                seen.add(dest)
                queue.append(dest)
    return [(("states", name),
             f"state '{name}' is unreachable from initial state '{initial}'", "error")
            for name in states if name not in seen]


def _shadowed(states: dict[str, Fields], edges: list[_Edge]) -> list[Finding]:
    # transitions tries a trigger's transitions in the order written; the first whose
    # guards pass wins. After an unguarded one, later ones for that state never fire.
    found: list[Finding] = []
    for name in states:
        first_unguarded: dict[str, _Edge] = {}
        for edge in edges:
            if edge.trigger is None or not edge.leaves(name, states):
                continue
            earlier = first_unguarded.get(edge.trigger)
            if earlier is not None:
                found.append((("transitions", edge.index),
                              f"transition '{edge.trigger}' from '{name}' never fires: transition "
                              f"#{earlier.index + 1} has the same trigger and source and no conditions",
                              "error"))
            elif not edge.guarded:
                first_unguarded[edge.trigger] = edge
    return _dedupe(found)


def _unhandled_timeouts(states: dict[str, Fields], edges: list[_Edge]) -> list[Finding]:
    found: list[Finding] = []
    for name, fields in states.items():
        timeout = fields.get("timeout")
        # A state with its own on_escalate has planned its escalation: nothing to warn of.
        if _kind(fields) != "waiting" or timeout is None or fields.get("on_escalate"):
            continue
        if not any(e.trigger == TIMEOUT and e.leaves(name, states) for e in edges):
            shown = format_duration(timeout) if isinstance(timeout, (int, float)) else timeout
            found.append((("states", name, "timeout"),
                          f"waiting state '{name}' has a {shown} timeout but no transition on "
                          "'timeout': when it expires the run escalates", "warning"))
    return found


def _endless_waits(states: dict[str, Fields]) -> list[Finding]:
    # A wait nobody answers must not last forever unnoticed (a callback that never comes):
    # with a timeout it ends in its `timeout` transition or an escalation a human sees.
    return [(("states", name),
             f"waiting state '{name}' has no timeout: a run may wait there forever; add one "
             "(e.g. 'timeout: 2d') so that an unanswered wait escalates", "warning")
            for name, fields in states.items() if _kind(fields) == "waiting" and fields.get("timeout") is None]


def _unknown_quorum_triggers(states: dict[str, Fields], edges: list[_Edge]) -> list[Finding]:
    # A quorum on a trigger that never leaves the state would never be asked: a typo.
    found: list[Finding] = []
    for name, fields in states.items():
        quorum = fields.get("quorum")
        if not isinstance(quorum, dict):
            continue
        leaving = sorted({e.trigger for e in edges if e.trigger and e.leaves(name, states)})
        for trigger in quorum:
            if trigger not in leaving:
                found.append((("states", name, "quorum", trigger),
                              f"quorum names '{trigger}', which no transition from '{name}' fires; "
                              f"its triggers: {', '.join(leaving) or 'none'}", "error"))
    return found


def _dedupe(findings: list[Finding]) -> list[Finding]:
    # A "*" transition is checked once per state: report each location once.
    seen: set[Loc] = set()
    unique: list[Finding] = []
    for finding in findings:
        if finding[0] not in seen:
            seen.add(finding[0])
            unique.append(finding)
    return unique
