"""Who may do what to a run, and whether the sender's proof still holds for it now.

Two questions, asked by engine.run.delivery under the run's lock:

- `proof_refusal`: is the sender proven for *this* run at *this* moment? A sender the
  supervisor could not prove (engine.trust.sender) is refused with its reason. A signed
  message must not have expired (on the engine's clock), must answer the wait that is
  open now (its signed `answers`: a signature for an earlier wait is refused on a later
  one), and its signature must not have been used before in this run (a copied file).
- `permission_refusal`: may this person do it? `approvers` of a waiting state for its
  triggers (checked by delivery); `not_starter` forbids the run's starter; a trigger with
  a `quorum` takes each approver once; `resolvers` (the state's, else the machine's)
  for resolutions; `operators` (the machine's) for cancel and upgrade, as the run's
  pinned definition says (not the definition an upgrade brings). A resolution that fires
  a trigger (`skip`) must also satisfy that trigger's approvers and `not_starter`, and
  cannot stand in for a quorum of several people.

Unset lists mean "anyone", as before they existed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from engine.run.clock import parse_iso
from engine.run.machine import RunnableMachine
from engine.run.replay import RunState
from engine.run.status import RunStatus
from engine.trust.sender import BY_ENGINE, ENGINE, SIGNATURE, Sender


class Asking(Protocol):
    """What is asked of a request here (engine.run.delivery.Request has it all)."""

    @property
    def trigger(self) -> str | None: ...
    @property
    def by(self) -> str: ...
    @property
    def resolve(self) -> Any: ...
    @property
    def cancel(self) -> bool: ...
    @property
    def upgrade(self) -> Any: ...


def proof_refusal(rs: RunState, request: Asking, sender: Sender | None, now: datetime) -> str | None:
    """Why the sender's proof does not hold for this run now (None: it does, or the home is open)."""
    if sender is None:
        return None
    if sender.problem is not None:
        return sender.problem
    if sender.via != SIGNATURE:
        return None
    if sender.expires is None or parse_iso(sender.expires) <= now:
        return f"not verified: the signature expired at {sender.expires}; hint: sign it again"
    answers_wait = not request.cancel and request.upgrade is None
    if answers_wait and sender.answers != rs.stands_at:
        now_at = f"waits on record #{rs.stands_at}" if rs.stands_at else f"is {rs.status}"
        return (f"not verified: the signature answers record #{sender.answers}, but the run {now_at}; "
                "a signature is good for one wait only; hint: sign again for the wait open now")
    if sender.signature is not None and sender.signature in rs.signatures:
        return (f"replayed: this signature was already used in record #{rs.signatures[sender.signature].seq}; "
                "a signed message is applied once")
    return None


def permission_refusal(rs: RunState, machine: RunnableMachine, request: Asking,
                       sender: Sender | None = None) -> str | None:
    """Why `request.by` may not do what `request` asks (None: they may). `sender`: as proven
    (the engine's own cancel of a child its parent no longer wants needs no operator)."""
    by = request.by
    if request.cancel or request.upgrade is not None:
        operators = rs.definition.get("operators")
        what = "cancel" if request.cancel else "upgrade"
        engine_cancel = (request.cancel and by == ENGINE and rs.parent is not None
                         and (sender is None or sender.via in (None, BY_ENGINE)))
        if operators is not None and by not in operators and not engine_cancel:
            return (f"'{by}' is not an operator of machine '{rs.machine}' and may not {what} it "
                    f"(operators: {', '.join(operators)})")
        return None
    if request.resolve:
        return _resolver_refusal(rs, machine, request)
    return _approver_refusal(rs, machine, request.trigger or "", by, rs.votes.get(request.trigger or "", []))


def quorum_of(machine: RunnableMachine, state: str, trigger: str) -> int:
    """How many distinct approvers `trigger` needs in `state` (1 unless a quorum says more)."""
    spec = machine.state(state)
    return (spec.quorum or {}).get(trigger, 1)


def _resolver_refusal(rs: RunState, machine: RunnableMachine, request: Asking) -> str | None:
    by, spec = request.by, machine.state(rs.state)
    resolvers = spec.resolvers if spec.resolvers is not None else rs.definition.get("resolvers")
    if resolvers is not None and by not in resolvers:
        return f"'{by}' is not a resolver of '{rs.state}' (resolvers: {', '.join(resolvers)})"
    if request.resolve != "skip" or request.trigger is None or rs.status != RunStatus.ESCALATED:
        return None
    trigger = request.trigger
    if spec.approvers is not None and by not in spec.approvers:
        return (f"'{by}' may not skip to '{trigger}': a skip fires '{trigger}', and '{by}' is not an approver "
                f"of '{rs.state}' (approvers: {', '.join(spec.approvers)})")
    needed = quorum_of(machine, rs.state, trigger)
    if needed > 1:
        return (f"a skip cannot fire '{trigger}': it needs {needed} distinct approvers in '{rs.state}'; "
                "hint: resolve with retry to open the wait again and collect the approvals")
    if spec.not_starter and by == rs.by:
        return f"'{by}' started the run and '{rs.state}' forbids its starter to fire '{trigger}' (not_starter)"
    return None


def _approver_refusal(rs: RunState, machine: RunnableMachine, trigger: str, by: str,
                      votes: list[str]) -> str | None:
    spec = machine.state(rs.state)
    if spec.not_starter and by == rs.by:
        return (f"'{by}' started the run and may not approve it: '{rs.state}' is not_starter "
                "(four eyes); hint: another approver must send it")
    if by in votes:
        return (f"'{by}' already approved '{trigger}' in this wait ({len(votes)} of "
                f"{quorum_of(machine, rs.state, trigger)} so far: {', '.join(votes)}); the same person counts once")
    return None
