"""Escalation tickets: `escalations/<run_id>.json` in the store, and the optional `on_escalate` call.

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
from typing import Any

from engine.errors import ConditionError, ImportPathError
from engine.run.context import StepContext
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from journal import Escalated, Store

log = logging.getLogger(__name__)

KIND = "escalations"  # the store's side files of this kind are the open tickets


def _name(run_id: str) -> str:
    return f"{run_id}.json"


def locate_ticket(store: Store, run_id: str) -> str:
    """Where the run's ticket is (what its `escalated` record names)."""
    return store.locate(KIND, _name(run_id))


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


def write_ticket(store: Store, run_id: str, content: dict[str, Any]) -> None:
    """Atomic replace: a reader sees the old ticket or the new one, never half of one."""
    store.publish(KIND, _name(run_id), json.dumps(content, indent=2, sort_keys=True).encode() + b"\n")


def read_ticket(store: Store, run_id: str) -> dict[str, Any] | None:
    try:
        data = store.fetch(KIND, _name(run_id))
        content = json.loads(data) if data is not None else None
    except (OSError, ValueError):
        return None  # missing or damaged: it is rewritten from the journal
    return content if isinstance(content, dict) else None


def remove_ticket(store: Store, run_id: str) -> None:
    store.withdraw(KIND, _name(run_id))


def tidy_copies(store: Store) -> list[str]:
    """A store whose tickets are rows keeps a file copy on the host that escalated; when
    another host resolves the run, that copy is this host's to remove (PgStore.tidy_copies).
    Returns the run ids whose copy went. Nothing to do for a store of files."""
    return [name.removesuffix(".json") for name in store.tidy_copies(KIND)]


def open_ticket(store: Store, rs: RunState, record: Escalated, machine: RunnableMachine) -> None:
    """Write the ticket (if missing or not yet notified) and call `on_escalate` once."""
    existing = read_ticket(store, rs.run_id)
    if existing and existing.get("seq") == record.seq and existing.get("notified"):
        return
    content = ticket(rs, record, _skippable(machine, record.state, rs.data))
    write_ticket(store, rs.run_id, content)
    content.update(notify(rs, record, machine))
    write_ticket(store, rs.run_id, content)


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
        # A hook that no longer imports is code changed under the run: say so in the ticket.
        error = f"code changed: {exc}" if isinstance(exc, ImportPathError) else f"{type(exc).__name__}: {exc}"
        log.warning("run %s: on_escalate %s failed: %s", rs.run_id, target, error)
        return {"notified": True, "notifier": target, "notify_error": error}
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
