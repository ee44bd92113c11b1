"""Code that changed under a waiting run: conditions it will need that no longer import.

A run pins its definition, not its code. An action that no longer resolves fails its
step (engine.run.outcome) and a condition asked by `plan` escalates there; both say
"code changed". A waiting run asks its conditions only when a message or its deadline
comes, and a message it cannot judge is refused: so a run left waiting on conditions
that no longer import would refuse every answer until its deadline. The runner asks
here whenever a session leaves a run waiting, and escalates it at once instead.
"""

from __future__ import annotations

from engine.definition.machine import Machine
from engine.errors import ImportPathError
from engine.run.plan import CODE_CHANGED, FIX_CODE, escalation
from engine.run.replay import RunState
from engine.run.status import RunStatus
from journal import Escalated


def broken_conditions(machine: Machine, state: str) -> list[ImportPathError]:
    """The conditions of the transitions leaving `state` whose code does not resolve now."""
    final = machine.state(state).final
    paths = [path for t in machine.runtime.transitions
             if state in t.source or (t.source == ["*"] and not final)
             for path in (*t.conditions, *t.unless)]
    broken = []
    for path in dict.fromkeys(paths):
        try:
            machine.resolve(path)  # cached once resolved: cheap on every session
        except ImportPathError as exc:
            broken.append(exc)
    return broken


def stale_wait(rs: RunState, machine: Machine) -> Escalated | None:
    """The escalation of a waiting run whose conditions no longer import, else None."""
    if rs.status != RunStatus.WAITING:
        return None
    broken = broken_conditions(machine, rs.state)
    if not broken:
        return None
    what = "; ".join(str(exc) for exc in broken)
    return escalation(rs, CODE_CHANGED, f"{what} (conditions of the wait in '{rs.state}'); {FIX_CODE}")
