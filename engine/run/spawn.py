"""What a spawning state does next, purely: start children, wait, or fire its join.

A spawning state (engine.definition.spawn_spec) starts child runs and waits for them.
`decide` looks at the parent's folded state (`RunState.brood`: children started and
ended, from its journal) and says what comes next:

- the join holds (enough children finished: all, any, or a quorum) → fire `joined`;
- it can no longer hold (too many children cancelled) → fire `failed`;
- free slots (`max_parallel`) and children not started yet → a `spawned` record listing
  the next ones, in item order;
- else nothing: the run waits (its `timeout`, if any, fires `timeout`).

Child ids are derived, readable and stable: `<parent>.<state>.<key>` (key: the item's
index from 0, or the branch name), `<parent>.<state>-<visit>.<key>` from the state's
second visit on. So the same spawn after a crash names the same children, and creating
them again finds them (the runner creates a child only if its journal holds no run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.definition.pinned import PinnedSpawn
from engine.definition.reserved import FAILED, JOINED
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from journal import InvalidRunIdError, check_run_id
from journal.records import ChildRun, Spawned

SPAWN_FAILED = "spawn failed"  # escalation reason (status, tickets)


@dataclass(frozen=True)
class Fire:
    """Fire the join's trigger (`joined` or `failed`)."""

    trigger: str


@dataclass(frozen=True)
class Fail:
    """The spawn cannot go on (its list is not a list, an id is too long): escalate."""

    detail: str


Decision = Fire | Fail | Spawned | None


def spawn_of(machine: RunnableMachine, state: str) -> PinnedSpawn | None:
    return machine.state(state).spawn


def child_id(run_id: str, state: str, visit: int, key: str) -> str:
    """The id of the child `key` of the `visit`-th visit of `state` in run `run_id`."""
    where = state if visit <= 1 else f"{state}-{visit}"
    return f"{run_id}.{where}.{key}"


def decide(rs: RunState, machine: RunnableMachine) -> Decision:
    """What the spawning state the run is in does next (see the module's docstring)."""
    spec = spawn_of(machine, rs.state)
    if spec is None:
        return None
    visit = rs.visits.get(rs.state, 1)
    brood = rs.brood if rs.brood is not None and rs.brood.state == rs.state and rs.brood.visit == visit else None
    if brood is None:
        children = planned(rs, spec, visit)
        if isinstance(children, str):
            return Fail(children)
        total, finished, cancelled, started = len(children), 0, 0, 0
    else:
        children, total = None, brood.total
        finished, cancelled, started = brood.finished, brood.cancelled, len(brood.started)
    needed = spec.needed(total)
    if finished >= needed:
        return Fire(JOINED)
    if total - cancelled < needed:
        return Fire(FAILED)
    live = started - finished - cancelled
    slots = (spec.max_parallel or total) - live
    if slots <= 0 or started >= total:
        return None
    if children is None:
        children = planned(rs, spec, visit)
        if isinstance(children, str):
            return Fail(children)
        if len(children) != total:
            return Fail(f"the list '{spec.for_each}' changed while its children ran: it had {total} items, "
                        f"now {len(children)}; resolve with retry to go on with the {total} planned")
    known = brood.started if brood is not None else {}
    start = [child for child in children if child.run_id not in known][:slots]
    return Spawned(state=rs.state, children=start, total=total)


def planned(rs: RunState, spec: PinnedSpawn, visit: int) -> list[ChildRun] | str:
    """Every child the spawn makes, in order; or why it cannot (a one-line reason)."""
    entries: list[tuple[str, str, dict[str, Any]]]
    if spec.branches is not None:
        given = {**rs.input, **rs.data}
        entries = [(name, machine, dict(given)) for name, machine in spec.branches.items()]
    else:
        key = spec.for_each or ""
        source = rs.data if key in rs.data else rs.input
        if key not in source:
            return (f"for_each '{key}': the run's data has no '{key}' (it has: "
                    f"{', '.join(sorted({*rs.data, *rs.input})) or 'nothing'}); it must be a list, one child per item")
        items = source[key]
        if not isinstance(items, list):
            return (f"for_each '{key}' is not a list in the run's data (it is a {type(items).__name__}); "
                    "it must be a list, one child per item")
        machine = spec.machine or ""
        entries = [(str(i), machine, item if isinstance(item, dict) else {"item": item})
                   for i, item in enumerate(items)]
    children = []
    for key, machine, given in entries:
        run_id = child_id(rs.run_id, rs.state, visit, key)
        try:
            check_run_id(run_id)
        except InvalidRunIdError as exc:
            return f"child id: {exc}"
        children.append(ChildRun(run_id=run_id, key=key, machine=machine, input=given))
    return children
