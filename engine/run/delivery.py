"""Whether a trigger or resolution sent from outside may apply to a run now, and why not.

A cancel applies to any run that has not ended, whatever it is doing (the supervisor
kills a step in flight first). An upgrade's rules are engine.run.upgrade's. For the
others, in the order they are checked: a message answers the wait that was open when
it arrived, so one that finds the run moved on is *stale*; a resolution needs an
escalated run (and a `skip` a transition that leads somewhere); a trigger needs a
waiting run, one of the triggers it waits for, an allowed approver, and a transition
whose conditions hold with the message's data merged in. Before all of these, the
sender's proof must hold for the run now, and the sender must be allowed to do what the
message asks (engine.run.authority: resolvers, operators, not_starter, quorum). A refusal
is journaled (`trigger_refused`) with the reason given here, so the journal shows who
tried what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from engine.definition.machine import Machine
from engine.errors import ConditionError
from engine.run import authority, upgrade
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from engine.run.status import RunStatus
from engine.run.upgrade import UpgradeRequest
from engine.trust.sender import Sender
from journal import Cancelled, CutStep


class Request(Protocol):
    """What the runner reads of a message from outside (engine.supervise.message.Message)."""

    @property
    def trigger(self) -> str | None: ...
    @property
    def by(self) -> str: ...
    @property
    def comment(self) -> str | None: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def resolve(self) -> Literal["retry", "skip", "abort"] | None: ...
    @property
    def cancel(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def upgrade(self) -> UpgradeRequest | None: ...


@dataclass
class Delivery:
    """What became of a trigger or resolution sent to a run."""

    accepted: bool
    reason: str
    state: RunState


def check(rs: RunState, machine: RunnableMachine, request: Request, answers: int | None,
          now: datetime, sender: Sender | None = None) -> tuple[str | None, Machine | None]:
    """Why `request` cannot apply now (None: it can) and, for an upgrade, the machine it
    moves the run to (validated here: engine.run.upgrade). `sender`: who sent it, as the
    supervisor proved it (None: trusted in-process code, or an open home)."""
    unproven = authority.proof_refusal(rs, request, sender, now)
    if unproven is not None:
        return unproven, None
    if request.upgrade is None:
        why = refusal(rs, machine, request, answers)
        return why or authority.permission_refusal(rs, machine, request, sender), None
    new = upgrade.load_upgrade(request.upgrade)
    if isinstance(new, str):
        return new, None
    why = "; ".join(upgrade.incompatibilities(rs, new, now)) or authority.permission_refusal(rs, machine, request)
    return why, None if why else new


def refusal(rs: RunState, machine: RunnableMachine, request: Request, answers: int | None) -> str | None:
    """Why `request` cannot be applied to the run now (None: it can).

    `answers`: what the run stood at (RunState.stands_at) when the request arrived; None
    when the sender did not say (then it cannot be stale).
    """
    if request.cancel:  # never stale: it is meant for the run whatever it does by now
        return f"the run has ended ({rs.status} in '{rs.state}'); nothing to cancel" if rs.ended else None
    try:
        return _staleness(rs, answers) or _refusal(rs, machine, request)
    except ConditionError as exc:
        return str(exc)


def cancellation(rs: RunState, machine: RunnableMachine, request: Request, source_file: str | None,
                 sender: Sender | None = None) -> Cancelled:
    """The `cancelled` record of an accepted cancel, naming the step it cuts off, if any:
    its worker was killed (or died), so a step that is not idempotent has an unknown outcome."""
    step, cut = rs.in_flight, None
    if step is not None:
        cut = CutStep(state=step.state, attempt=step.attempt, idempotency_key=step.idempotency_key,
                      outcome_unknown=not machine.state(step.state).idempotent)
    return Cancelled(by=request.by, reason=request.reason or "", source_file=source_file, cut_step=cut,
                     **provenance(sender))


def provenance(sender: Sender | None) -> dict[str, Any]:
    """The fields a decision record gets from its sender: `verified`, `via`, `signature`."""
    if sender is None or not sender.verified:
        return {"verified": False}
    return {"verified": True, "via": sender.via, "signature": sender.signature}


def label(request: Request) -> str:
    """How a refused request is named in `trigger_refused`: its trigger, `resolve:ACTION`,
    `cancel` or `upgrade`."""
    if request.cancel:
        return "cancel"
    if request.upgrade is not None:
        return "upgrade"
    return f"resolve:{request.resolve}" if request.resolve else request.trigger or ""


def _staleness(rs: RunState, answers: int | None) -> str | None:
    if answers is None or rs.stands_at == answers:
        return None
    then = f"waited on record #{answers}" if answers else "was not waiting for anything"
    now = f"waits on record #{rs.stands_at}" if rs.stands_at else f"is {rs.status}"
    return (f"stale: when this file arrived the run {then}; it has moved on and now {now} "
            f"in '{rs.state}'; send it again if it still applies")


def _refusal(rs: RunState, machine: RunnableMachine, request: Request) -> str | None:
    if request.resolve:
        if rs.status != RunStatus.ESCALATED:
            return f"run is not escalated (it is {rs.status} in '{rs.state}'); nothing to resolve"
        if request.resolve == "skip" and (
                request.trigger is None or machine.next_state(rs.state, request.trigger, rs.data) is None):
            return (f"'{rs.state}' has no transition for '{request.trigger}' "
                    f"(or its conditions are not met); skip with one of: {'|'.join(machine.triggers_from(rs.state))}")
        return None
    if rs.status != RunStatus.WAITING:
        return f"run is {rs.status} in '{rs.state}', not waiting for a trigger"
    trigger = request.trigger
    if trigger is None or trigger not in rs.triggers:
        return (f"'{trigger}' is not a trigger of state '{rs.state}' "
                f"(it waits for {'|'.join(rs.triggers) or 'nothing'})")
    if rs.approvers and request.by not in rs.approvers:
        return f"'{request.by}' is not an approver of '{rs.state}' (approvers: {', '.join(rs.approvers)})"
    if machine.next_state(rs.state, trigger, {**rs.data, **(request.data or {})}) is None:
        return "conditions not met"
    return None
