"""Sending a message to a run: what `ratchet send/approve/reject/resolve/cancel/upgrade`
and `engine.Ratchet` share, so an application and a person leave the same audit trail.

`compose` validates the fields into a `Message` (its problems said the way people write
the fields), `check_deliverable` refuses what can never apply (an unknown run, a run
that has ended, a trigger its machine does not have), and `send` does both, then drops
the file into the inbox (engine.supervise.message.write_message: the same bytes and the
same kind of name whoever writes it). Whether the run is waiting for it, or the sender is
an approver, depends on the moment the supervisor applies the file: it files the answer
in inbox/done/ or inbox/rejected/, exactly as for a file dropped by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from engine.errors import InvalidMessageError, UnknownRunError
from engine.home import Home
from engine.run.replay import fold
from engine.supervise.message import Message, write_message
from journal import check_run_id

_FRIENDLY = {  # pydantic's pattern messages, said the way people write these fields
    "trigger": "use lowercase letters, digits and '_', starting with a letter",
    "by": "use letters, digits and '.', '_', '@', '+', '-', starting with a letter or digit",
}


@dataclass(frozen=True)
class Sent:
    """A message dropped into the inbox: its file, its run, and the run's last record when
    it was checked (a later record is the supervisor's answer, or something newer)."""

    path: Path
    run_id: str
    seq: int


def compose(**fields: Any) -> Message:
    """The message of `fields` (None values left out); InvalidMessageError listing every problem."""
    try:
        return Message.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InvalidMessageError("invalid message", "; ".join(_problem(e) for e in exc.errors())) from exc


def _problem(error: ErrorDetails) -> str:
    field = ".".join(map(str, error["loc"])) or "message"
    if error["type"] == "string_pattern_mismatch" and field in _FRIENDLY:
        return f"{field} {error['input']!r}: {_FRIENDLY[field]}"
    return f"{field}: {error['msg']}"


def check_deliverable(home: Home, message: Message) -> int:
    """Refuse a message that can never apply; return the run's last seq as checked.

    UnknownRunError for a run the store does not hold; InvalidMessageError for a run that
    has ended or a trigger its machine does not have.
    """
    if not home.store.exists(check_run_id(message.run)):
        raise UnknownRunError(message.run, home.store.location)
    rs = fold(home.store.read(message.run).records)
    if rs.ended:
        raise InvalidMessageError(f"run '{message.run}' is {rs.status} (in '{rs.state}'); it takes no more messages")
    triggers = list(dict.fromkeys(t["trigger"] for t in rs.definition.get("transitions", [])))
    if message.trigger is not None and message.trigger not in triggers:
        raise InvalidMessageError(f"machine '{rs.machine}' of run '{message.run}' has no trigger "
                                  f"'{message.trigger}'; its triggers: {', '.join(triggers)}")
    return rs.last_seq


def send(home: Home, message: Message) -> Sent:
    """Check `message` (see check_deliverable), then drop it into the inbox atomically."""
    seq = check_deliverable(home, message)
    return Sent(write_message(home, message), message.run, seq)
