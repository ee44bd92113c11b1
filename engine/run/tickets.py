"""Escalation tickets: `escalations/<run_id>.json`, and the optional `on_escalate` call.

The `escalated` record is journaled (durable) first; the ticket and the notification
follow. A ticket is written atomically (temp, fsync, rename, fsync dir) with
`notified: false`, then rewritten once `on_escalate` has been called, so a crash between
the two is repaired on the next replay: a missing or un-notified ticket is written and
notified again (the notification's idempotency key, f"{run_id}/escalation/{n}" for the
run's n-th escalation, lets a notifier drop the duplicate). A failing notifier is logged
into the ticket, never allowed to crash the run. The ticket is removed once a resolution
is journaled (and on the next replay, if a crash came in between).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from engine.durable import publish
from engine.errors import ConditionError
from engine.run.context import StepContext
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from journal import Escalated, fsync_dir

log = logging.getLogger(__name__)


def ticket_path(escalations: Path, run_id: str) -> Path:
    return escalations / f"{run_id}.json"


def ticket(rs: RunState, record: Escalated, triggers: list[str]) -> dict[str, Any]:
    """The ticket's content: what happened and the exact commands that resolve it."""
    rid = rs.run_id
    how = [f"ratchet resolve {rid} retry --by NAME"]
    how += [f"ratchet resolve {rid} skip {t} --by NAME" for t in triggers]
    how.append(f"ratchet resolve {rid} abort --by NAME")
    return {
        "run_id": rid, "machine": rs.machine, "version": rs.version, "state": record.state,
        "reason": record.reason, "detail": record.detail, "since": record.ts, "seq": record.seq,
        "resolve": how, "notified": False,
    }


def write_ticket(path: Path, content: dict[str, Any]) -> None:
    """Atomic replace: a reader sees the old ticket or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(content, indent=2, sort_keys=True).encode() + b"\n"
    publish(path.with_name(f".{path.name}.{os.getpid()}.tmp"), path, data)


def read_ticket(path: Path) -> dict[str, Any] | None:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or damaged: it is rewritten from the journal
    return content if isinstance(content, dict) else None


def remove_ticket(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def open_ticket(escalations: Path, rs: RunState, record: Escalated, machine: RunnableMachine) -> Path:
    """Write the ticket (if missing or not yet notified) and call `on_escalate` once."""
    path = ticket_path(escalations, rs.run_id)
    existing = read_ticket(path)
    if existing and existing.get("seq") == record.seq and existing.get("notified"):
        return path
    content = ticket(rs, record, _skippable(machine, record.state, rs.data))
    write_ticket(path, content)
    content.update(notify(rs, record, machine))
    write_ticket(path, content)
    return path


def notify(rs: RunState, record: Escalated, machine: RunnableMachine) -> dict[str, Any]:
    """Call the state's (else the machine's) on_escalate; what happened, for the ticket."""
    target = machine.on_escalate(record.state)
    if not target:
        return {"notified": True, "notifier": None}
    ctx = StepContext(run_id=rs.run_id, machine=rs.machine, state=record.state, attempt=1,
                      idempotency_key=f"{rs.run_id}/escalation/{rs.escalations}",
                      input=copy.deepcopy(rs.input), data=copy.deepcopy(rs.data),
                      escalation={"reason": record.reason, "detail": record.detail, "seq": record.seq})
    try:
        machine.resolve(target)(ctx)
    except Exception as exc:  # best effort: a broken notifier must not break the run
        log.warning("run %s: on_escalate %s failed: %s", rs.run_id, target, exc)
        return {"notified": True, "notifier": target, "notify_error": f"{type(exc).__name__}: {exc}"}
    return {"notified": True, "notifier": target}


def _skippable(machine: RunnableMachine, state: str, data: dict[str, Any]) -> list[str]:
    """Triggers that `skip` can fire from `state` now (a guarded one only if its conditions hold)."""
    try:
        triggers = machine.triggers_from(state)
    except KeyError:
        return []
    return [t for t in triggers if _leads_somewhere(machine, state, t, data)]


def _leads_somewhere(machine: RunnableMachine, state: str, trigger: str, data: dict[str, Any]) -> bool:
    try:
        return machine.next_state(state, trigger, data) is not None
    except ConditionError:
        return False
