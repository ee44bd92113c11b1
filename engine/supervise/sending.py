"""Sending a message to a run: what `ratchet send/approve/reject/resolve/cancel/upgrade`
and `engine.Ratchet` share, so an application and a person leave the same audit trail.

`compose` validates the fields into a `Message` (its problems said the way people write
the fields), `check_deliverable` refuses what can never apply (an unknown run, a run
that has ended, a trigger its machine does not have), and `send` does both, signs the
message when given a key (engine.trust.envelope: for the wait the run is in now), then
drops the file into the inbox (engine.supervise.message.write_message: the same bytes and the
same kind of name whoever writes it). Whether the run is waiting for it, or the sender is
an approver, depends on the moment the supervisor applies the file: it files the answer
in inbox/done/ or inbox/rejected/, exactly as for a file dropped by hand.

Where the store keeps messages as rows (PostgreSQL), `send` posts the message there
directly, so that whichever host's supervisor delivers the run gets it, when that row can
prove its sender: the message is signed, or the home is open (no people.yaml). Otherwise
(a people file and no key) it writes the inbox file as before, whose owner proves its
sender on this host, and `Sent.note` says so: the database cannot tell which Unix user
inserted a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from engine.errors import InvalidMessageError, UnknownRunError
from engine.home import Home
from engine.run.replay import RunState, fold
from engine.supervise.message import Message, message_name, write_message
from journal import check_run_id

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_FRIENDLY = {  # pydantic's pattern messages, said the way people write these fields
    "trigger": "use lowercase letters, digits and '_', starting with a letter",
    "by": "use letters, digits and '.', '_', '@', '+', '-', starting with a letter or digit",
}


@dataclass(frozen=True)
class Sent:
    """A message dropped into the inbox: its file, its run, and the run's last record when
    it was checked (a later record is the supervisor's answer, or something newer).
    Posted to the store's messages table instead (PostgreSQL): `path` is None and `posted`
    is the row's key, the `source_file` its delivery journals."""

    path: Path | None
    run_id: str
    seq: int
    posted: str | None = None
    where: str = ""  # where it went, for people: the file's path, or the row's place in the store
    note: str | None = None  # why it went where it went, when that is not what was asked (PostgreSQL)


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
    return _deliverable(home, message).last_seq


def _deliverable(home: Home, message: Message) -> RunState:
    if not home.store.exists(check_run_id(message.run)):
        raise UnknownRunError(message.run, home.store.location)
    rs = fold(home.store.read(message.run).records)
    if rs.ended:
        raise InvalidMessageError(f"run '{message.run}' is {rs.status} (in '{rs.state}'); it takes no more messages")
    triggers = list(dict.fromkeys(t["trigger"] for t in rs.definition.get("transitions", [])))
    if message.trigger is not None and message.trigger not in triggers:
        raise InvalidMessageError(f"machine '{rs.machine}' of run '{message.run}' has no trigger "
                                  f"'{message.trigger}'; its triggers: {', '.join(triggers)}")
    return rs


def send(home: Home, message: Message, *, key: Ed25519PrivateKey | None = None,
         valid_for: float = 86400.0) -> Sent:
    """Check `message` (see check_deliverable), sign it with `key` if given (valid for
    `valid_for` seconds on the engine's clock), then drop it into the inbox atomically."""
    rs = _deliverable(home, message)
    if key is not None:
        message = signed(home, message, rs, key, valid_for)
    return post_or_drop(home, message, rs)


def post_or_drop(home: Home, message: Message, rs: RunState) -> Sent:
    """Post `message` to the store's messages table when a row can prove its sender (it is
    signed, or the home is open), else drop it into this host's inbox."""
    from engine.trust.people import PEOPLE_FILE
    from journal.messages import message_box

    box = message_box(home.store)
    people = (home.root / PEOPLE_FILE).exists()
    if box is None or (people and message.signature is None):
        path = write_message(home, message)
        note = None if box is None else (
            f"written to this host's inbox, not posted to {home.store.location}: with {PEOPLE_FILE}, "
            "an unsigned message is proven by its file's owner; sign it with --key to post it")
        return Sent(path, message.run, rs.last_seq, where=str(path), note=note)
    from engine.supervise.postbox import who_posts
    from journal.messages import Posting

    body = message.model_dump_json(exclude_defaults=True).encode() + b"\n"  # the bytes an inbox file holds
    while True:  # a key already taken (a 3-byte token drawn twice in one microsecond): draw again
        key = message_name(message)
        posting = Posting(key=key, run_id=message.run, body=body, answers=rs.stands_at,
                          posted_by=who_posts("ratchet send"))
        if box.post_message(posting):
            return Sent(None, message.run, rs.last_seq, posted=key, where=box.locate_message(key))


def signed(home: Home, message: Message, rs: RunState, key: Ed25519PrivateKey, valid_for: float) -> Message:
    """`message` signed with `key` for the wait `rs` is in now (its `stands_at`), valid for
    `valid_for` seconds. With a people file, `key` must be the sender's own (a signature
    the supervisor would refuse is refused here, saying why)."""
    import json

    from engine.run.clock import clock_from_env
    from engine.trust.envelope import sign
    from engine.trust.people import load_people
    from journal.keys import public_pem

    people = load_people(home.root)  # PeopleFileError: all of people.yaml must be valid to send
    known = people.keys.get(message.by) if people is not None else None
    if people is not None and (known is None or public_pem(known) != public_pem(key)):
        why = "gives no public_key for it" if known is None else "names another public key for it"
        raise InvalidMessageError(f"the key is not {message.by}'s key: {home.root / 'people.yaml'} {why}",
                                  f"hint: sign with {message.by}'s own key, or add its public key to people.yaml")
    expires = clock_from_env().now() + timedelta(seconds=valid_for)
    body = json.loads(message.model_dump_json(exclude_defaults=True))
    return Message.model_validate(sign(body, key, rs.stands_at, expires))
