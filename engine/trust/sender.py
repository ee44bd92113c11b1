"""Who sent an inbox file, proven or not: the `Sender` the supervisor hands to the run.

With a people file (engine.trust.people), a file's sender is proven one of two ways:

- **signature**: the message carries a `signature` (engine.trust.envelope) that verifies
  with the public key of the person named in `by`. A file that carries one is judged by
  it alone: a bad signature is refused even if the file's owner is that person.
- **unix_user**: the file's owner — read by `fstat` on the descriptor the supervisor
  opened after claiming the file, never by name — is the Unix user people.yaml gives
  for `by`. The file must have one link (a hard link to someone else's file keeps their
  ownership) and be writable by its owner only (else anyone could have rewritten it).

What depends on the run (the wait a signature answers, its expiry on the engine's clock,
a signature used before) is checked under the run's lock (engine.run.authority). Without
a people file the home is open: the sender is taken at its word, `verified: false`. The
engine's own messages (`by: ratchet`, not a person of people.yaml) are proven `via: engine`
by their owner: the supervisor's own Unix user.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.trust.envelope import signature_holds

if TYPE_CHECKING:  # people.yaml's models (pydantic): a worker continuing a run needs none of them
    from engine.trust.people import People

UNIX_USER, SIGNATURE, BY_ENGINE = "unix_user", "signature", "engine"  # the `via` of a verified decision
ENGINE = "ratchet"  # who the engine's own messages are from (the cancel of a child its parent no longer wants);
# proven `via` BY_ENGINE when the file is owned by the supervisor's own Unix user, who can write journals anyway


@dataclass(frozen=True)
class FileFacts:
    """What the open descriptor of a claimed inbox file says of it (`os.fstat`)."""

    uid: int
    nlink: int
    mode: int


@dataclass(frozen=True)
class Sender:
    """Who a message is from, and how that is known.

    `problem` set: the sender is not proven and the message must be refused with it.
    Else `verified` False is an open home's word; True comes `via` a unix_user or a
    signature (then `signature`, `answers` and `expires` are the envelope's, for the run
    to check against its wait, its clock and the signatures it has already seen).
    """

    by: str
    verified: bool = False
    via: str | None = None
    problem: str | None = None
    signature: str | None = None
    answers: int | None = None
    expires: str | None = None


def prove(people: People | None, message: dict[str, Any], facts: FileFacts) -> Sender:
    """The sender of `message` (the file's JSON/YAML object, already valid) given the file's facts."""
    by = str(message.get("by", ""))
    if people is None:
        return Sender(by)
    person = people.persons.get(by)
    if by == ENGINE and person is None and "signature" not in message:
        return _engine(facts)
    if person is None:
        return Sender(by, problem=f"not verified: '{by}' is not in {people.path.name}; hint: add "
                                  f"'{by}: {{unix_user: USER}}' or a public_key there, or send as someone listed")
    signature = message.get("signature")
    if isinstance(signature, dict):
        key = people.keys.get(by)
        if key is None:
            return Sender(by, problem=f"not verified: the file is signed but {people.path.name} gives '{by}' "
                                      "no public_key to check it with; hint: add one ('ratchet keys new NAME' "
                                      "prints the line)")
        if not signature_holds(message, key):
            return Sender(by, problem=f"not verified: the signature does not verify with {by}'s key "
                                      f"({person.public_key}): forged, altered after signing, or signed with "
                                      "another key; hint: sign again with the key people.yaml names")
        return Sender(by, True, SIGNATURE, signature=str(signature["value"]),
                      answers=int(signature["answers"]), expires=str(signature["expires"]))
    owner = user_name(facts.uid)
    login = _login(facts.uid)
    if person.unix_user is None:
        return Sender(by, problem=f"not verified: '{by}' is recognised by signature only and the file "
                                  f"(owned by {owner}) is not signed; hint: send it with --key")
    if login != person.unix_user:
        return Sender(by, problem=f"not verified: the file is owned by Unix user {owner}, not by "
                                  f"'{person.unix_user}' ({by} in {people.path.name}); hint: write it as "
                                  f"{person.unix_user}, or sign it with --key")
    if facts.nlink != 1:
        return Sender(by, problem=f"not verified: the file has {facts.nlink} hard links (a link to another's "
                                  "file keeps its owner); hint: write a new file")
    if facts.mode & 0o022:
        return Sender(by, problem=f"not verified: the file is writable by others (mode {facts.mode & 0o777:o}), "
                                  "so its owner may not have written what it says; hint: write it with mode 644")
    return Sender(by, True, UNIX_USER)


def _engine(facts: FileFacts) -> Sender:
    """A message in the engine's name: proven only if the supervisor's own Unix user wrote it."""
    if facts.uid != os.geteuid() or facts.nlink != 1 or facts.mode & 0o022:
        return Sender(ENGINE, problem=f"not verified: only the supervisor's own Unix user ({user_name(os.geteuid())}) "
                                      f"writes as '{ENGINE}', and this file is owned by {user_name(facts.uid)} "
                                      f"(or linked or writable by others); hint: send as someone in people.yaml")
    return Sender(ENGINE, True, BY_ENGINE)


def user_name(uid: int) -> str:
    """'alice' (uid 1001), or uid 1001 for an owner with no account: how a refusal names an owner."""
    login = _login(uid)
    return f"'{login}' (uid {uid})" if login is not None else f"uid {uid}"


def _login(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
