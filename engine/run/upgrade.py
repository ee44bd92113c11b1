"""Whether a live run may move to another definition of its machine, and every reason why not.

`ratchet upgrade` asks before it writes its inbox message (against the run as journaled
then); the runner asks again when it delivers the message, holding the run's lock, and
only that answer counts. A run moves only at rest — waiting, sleeping before a retry,
or escalated — never with a step in flight, and only where the new definition still
makes sense of where it stands:

- the same machine, another version (and another definition);
- its current state exists in the new definition, with the same kind;
- waiting: every trigger it waits for still leaves that state, and the new timeout
  (counted, like the old one, from when the state was entered) has not already run out;
- sleeping before a retry: the new policy still allows the attempt it will make.

Approvers and timeouts may change: the wait is opened again under the new definition.
"""

from __future__ import annotations

import difflib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from engine.definition.machine import Machine
from engine.errors import DefinitionError
from engine.run.clock import iso, parse_iso
from engine.run.replay import RunState
from engine.run.status import RunStatus
from journal import Upgraded


class UpgradeRequest(Protocol):
    """What an `upgrade` message carries (engine.supervise.message.Upgrade)."""

    @property
    def definition(self) -> dict[str, Any]: ...
    @property
    def definition_hash(self) -> str: ...
    @property
    def source(self) -> str | None: ...


def load_upgrade(request: UpgradeRequest) -> Machine | str:
    """The machine an upgrade message carries, validated here (its code resolved beside
    `source`); or why it cannot be used."""
    from engine.definition.loader import machine_from_definition  # a new definition is validated: pydantic

    base_dir = Path(request.source).parent if request.source else None
    try:
        machine = machine_from_definition(request.definition, base_dir)
    except DefinitionError as exc:
        problems = [str(p) for p in exc.problems if p.severity == "error"] or [str(exc)]
        return f"the new definition does not load: {'; '.join(problems)}"
    if machine.hash != request.definition_hash:
        return (f"the new definition's hash is {machine.hash}, not {request.definition_hash} "
                "as the message says; write the message with 'ratchet upgrade'")
    return machine


def upgraded(rs: RunState, new: Machine, request: UpgradeRequest, by: str, comment: str | None,
             source_file: str | None) -> Upgraded:
    """The `upgraded` record moving the run to `new` (once `incompatibilities` found none)."""
    return Upgraded(by=by, version=new.runtime.version, definition=new.pinned, definition_hash=new.hash,
                    from_hash=rs.definition_hash, source=request.source, source_file=source_file,
                    comment=comment, code=new.code)


def incompatibilities(rs: RunState, new: Machine, now: datetime) -> list[str]:
    """Every reason the run `rs` cannot move to `new` at `now` (empty: it can)."""
    reasons: list[str] = []
    old_v, new_v = _labels(rs, new)
    if new.name != rs.machine:
        reasons.append(f"the new definition is machine '{new.name}', the run follows '{rs.machine}'; "
                       "a run moves only to another version of its own machine")
    if new.hash == rs.definition_hash:
        reasons.append(f"the run follows this very definition already ({new.hash[:19]}…)")
    elif new.runtime.version == rs.version:
        reasons.append(f"the run follows version {rs.version} already, with another definition; "
                       "give the new definition a new version")
    if rs.ended:
        reasons.append(f"the run has ended ({rs.status} in '{rs.state}'); only a live run can move")
        return reasons
    state, old_kind = rs.state, _kind(rs.definition["states"].get(rs.state, {}))
    spec = new.runtime.states.get(state)
    if spec is None:
        close = difflib.get_close_matches(state, list(new.runtime.states), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        reasons.append(f"state '{state}', where the run is, is not in {new_v}{hint}")
    elif spec.kind != old_kind:
        reasons.append(f"state '{state}', where the run is, is a {old_kind} state in {old_v} "
                       f"but a {spec.kind} state in {new_v}")
    elif (spec.spawn is not None) != bool(rs.definition["states"].get(state, {}).get("spawn")):
        # A parent waiting for its children must keep a join to wait on, and a wait for a
        # person must not become a wait for children that were never spawned.
        new_says, old_says = ("spawns", "does not") if spec.spawn is not None else ("does not spawn", "does")
        reasons.append(f"state '{state}', where the run is, {new_says} children in {new_v} but {old_says} in {old_v}")
    if rs.status == RunStatus.RUNNING:
        step = rs.in_flight
        now_doing = (f"a step is in flight ('{step.state}' attempt {step.attempt}, key {step.idempotency_key})"
                     if step is not None else f"the run is moving (in '{state}')")
        reasons.append(f"{now_doing}; upgrade between steps: when the run waits, sleeps before a retry "
                       "or is escalated")
    elif spec is not None and spec.kind == old_kind:
        if rs.status == RunStatus.WAITING:
            reasons += _wait_reasons(rs, new, now)
        elif rs.status == RunStatus.RETRYING:
            reasons += _retry_reasons(rs, new)
    return reasons


def _labels(rs: RunState, new: Machine) -> tuple[str, str]:
    """How reasons name the run's definition and the new one: by version, unless equal."""
    if new.runtime.version == rs.version:
        return "the run's definition", "the new definition"
    return f"v{rs.version}", f"v{new.runtime.version}"


def _wait_reasons(rs: RunState, new: Machine, now: datetime) -> list[str]:
    reasons, new_v = [], _labels(rs, new)[1]
    kept = new.triggers_from(rs.state)
    gone = [t for t in rs.triggers if t not in kept]
    if gone:
        reasons.append(f"the run waits in '{rs.state}' for {'|'.join(gone)}, which {new_v} no longer takes "
                       f"there (it takes {'|'.join(t for t in kept) or 'nothing'}); messages sent for it "
                       "would be refused")
    timeout = new.state(rs.state).timeout
    if timeout is not None and rs.entered:
        deadline = parse_iso(rs.entered) + timedelta(seconds=timeout)
        if deadline <= now:
            reasons.append(f"under {new_v} the wait in '{rs.state}' (entered {rs.entered}) ran out at "
                           f"{iso(deadline)}: the run would time out at once; give it a longer timeout")
    return reasons


def _retry_reasons(rs: RunState, new: Machine) -> list[str]:
    policy = new.state(rs.state).retry
    attempts = policy.attempts if policy else 1
    upcoming = rs.retry_attempt or 0
    if upcoming <= attempts:
        return []
    return [f"the run sleeps before attempt {upcoming} of '{rs.state}', but {_labels(rs, new)[1]} allows "
            f"{attempts} attempt{'s' if attempts != 1 else ''} there; allow at least {upcoming}"]


def _kind(fields: dict[str, Any]) -> str:
    """The kind of a state as pinned (the same rule as StateSpec.kind)."""
    if fields.get("final"):
        return "final"
    return "task" if fields.get("action") else "waiting"
