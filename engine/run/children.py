"""The parent's side of fan-out that touches other journals: creating children, reading their ends.

Who delivers a child's end to its parent? The parent reads it, from the child's own
journal, in its own session (its lock held): the child's journal is the truth about
how it ended, and the parent journals `child_finished` once per child (its replay
counts a child once: `Brood.end`). Nothing is in transit between the two — no message
file to lose or apply twice — so a crash anywhere (after the child's `run_finished`,
before or after the parent's `child_finished`) is repaired by the parent's next session
reading the child again. The supervisor only says *when* to look (and which children
ended: `hints`), from its run table; `ratchet run` of a parent looks at every live child.

Children are created after the parent's `spawned` record is durable (write-ahead), each
only if its journal holds no run yet, so a repeated creation after a crash is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from engine.definition.machine import Machine
from engine.faults import crash_point
from engine.run.replay import RunState, fold
from engine.run.status import RunStatus
from journal import JournalError, RunStarted, Store
from journal.records import ChildFinished, ChildRun

# (machine file, input, child id, parent id, parent state) -> create the child's run_started
Create = Callable[[Path, dict[str, Any], str, str, str], None]


def child_machine(parent: RunState, ref: str, machines_dir: Path) -> Path:
    """The machine file a spawn names, found beside the parent's machine file."""
    from engine.definition.loader import find_child_machine  # validating: only when children are made

    base = Path(parent.source).parent if parent.source else machines_dir
    return find_child_machine(ref, base)


def create(store: Store, parent: RunState, children: Iterable[ChildRun], machines_dir: Path,
           make: Create) -> None:
    """Create each child that does not exist yet (a crash may have created some already)."""
    machines: dict[str, Path] = {}
    for child in children:
        if _started(store, child.run_id):
            continue
        if child.machine not in machines:
            machines[child.machine] = child_machine(parent, child.machine, machines_dir)
        make(machines[child.machine], dict(child.input), child.run_id, parent.run_id, parent.state)
        crash_point("after_child_created")


def _started(store: Store, run_id: str) -> bool:
    if not store.exists(run_id):
        return False
    try:
        records = store.read(run_id).records
    except JournalError:
        return False  # a torn first line: the create cuts it and writes run_started
    return bool(records) and isinstance(records[0], RunStarted)


def ends(store: Store, parent: RunState, hints: Iterable[str] | None) -> list[ChildFinished]:
    """`child_finished` records for the parent's live children whose journals say they ended
    (only `hints` among them, if given: the supervisor names the ones it saw end)."""
    brood = parent.brood
    if brood is None or brood.state != parent.state or parent.status != RunStatus.WAITING:
        return []
    live = brood.live
    if hints is not None:
        wanted = set(hints)
        live = [child for child in live if child in wanted]
    spawn = parent.definition["states"].get(parent.state, {}).get("spawn") or {}
    escalation_ends = spawn.get("escalated_children") == "fail"
    found = []
    for child in live:
        try:
            rs = fold(store.read(child).records)
        except JournalError:
            continue  # not created yet (a crash before it), or damaged: `verify` says which
        if rs.ended or (escalation_ends and rs.status == RunStatus.ESCALATED):
            found.append(ChildFinished(state=parent.state, child=child, key=brood.started[child],
                                       status=str(rs.status), outcome=rs.outcome, data=dict(rs.data)))
    return found


def is_spawn_wait(rs: RunState, machine: Machine) -> bool:
    return rs.brood is not None and rs.brood.state == rs.state and machine.state(rs.state).spawn is not None
