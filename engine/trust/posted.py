"""Who sent a message that came through the store's messages table (journal.messages), proven again.

A row is only what someone with access to the database wrote, so the supervisor that
delivers it believes none of its flags. It proves the sender again, from the row:

- **signature**: a signed message is judged by its signature alone, exactly as an inbox
  file (engine.trust.sender), on the bytes the row carries;
- **the posting host's proof**: a host proves an inbox file's sender by the file's owner
  (or as the engine's own message) where the file was, and signs that proof with the
  home's key (`keys/home.key`, which every host sharing the store holds: it seals the
  journals). The signature covers the row's key, run, the message's bytes (sha256), the
  wait it answers, the name and the `via`; it verifies only with the home's key, so a row written by SQL with
  `verified_by` and `via` set, but no such signature, proves nothing;
- nothing else: `ratchet send` cannot prove through the database which Unix user ran it,
  so with a people file an unsigned row is refused. In an open home (no people file)
  the sender is taken at its word, `verified: false`, as for files.

A proof the posting host could not make (`problem`) is refused with the host's reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.trust.sender import BY_ENGINE, ENGINE, UNIX_USER, FileFacts, Sender, prove
from journal.messages import Posting

if TYPE_CHECKING:
    from engine.trust.people import People

_PROOF = "ratchet message proof v1"  # so a proof's signature can never stand for anything else the key signs
_NO_FILE = FileFacts(uid=-1, nlink=0, mode=0o777)  # a row has no file: no owner can be proven from it


def proof_bytes(posting: Posting, by: str, via: str) -> bytes:
    """What a host's proof signs: canonical JSON of the row's key, run, body hash, the wait it
    answers (so a forger cannot make an old approval answer a newer wait), name and via."""
    fields = {"answers": posting.answers, "by": by, "body_sha256": hashlib.sha256(posting.body).hexdigest(),
              "key": posting.key, "run": posting.run_id, "via": via, "what": _PROOF}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def attest(posting: Posting, sender: Sender, key: Ed25519PrivateKey) -> Posting:
    """`posting` with what its host proved of `sender`, signed with the home's `key` when
    proven by the file's owner or as the engine's own (a signature needs no word of ours)."""
    import msgspec

    if sender.problem is not None:
        return msgspec.structs.replace(posting, problem=sender.problem)
    if not sender.verified or sender.via is None:
        return posting  # an open home: nothing proven
    attestation = None
    if sender.via in (UNIX_USER, BY_ENGINE):
        attestation = base64.b64encode(key.sign(proof_bytes(posting, sender.by, sender.via))).decode("ascii")
    return msgspec.structs.replace(posting, verified_by=sender.by, via=sender.via, attestation=attestation)


def prove_posted(people: People | None, message: dict[str, Any], posting: Posting,
                 home_key: Ed25519PublicKey) -> Sender:
    """The sender of a row's message (its object as written, already valid), proven again here."""
    by = str(message.get("by", ""))
    if posting.problem is not None:
        return Sender(by, problem=posting.problem)
    if people is None:
        return Sender(by)
    if isinstance(message.get("signature"), dict):
        return prove(people, message, _NO_FILE)  # judged by its signature alone, as a file is
    via = posting.via
    if via in (UNIX_USER, BY_ENGINE) and posting.verified_by == by and _holds(posting, by, via, home_key):
        if via == UNIX_USER and (by not in people.persons or people.persons[by].unix_user is None):
            return Sender(by, problem=f"not verified: '{by}' is not recognised by Unix user in "
                                      f"{people.path.name} any more; hint: send it again, signed with --key")
        if via == BY_ENGINE and (by != ENGINE or by in people.persons):
            return Sender(by, problem=f"not verified: only the engine sends as '{ENGINE}'")
        return Sender(by, True, via)
    claimed = f" (it claims {posting.verified_by!r} via {via})" if via or posting.verified_by else ""
    return Sender(by, problem=f"not verified: the message came through the database from {posting.posted_by or '?'}, "
                              f"unsigned, with no proof of its sender signed by the home's key{claimed}; hint: "
                              "send it with --key, or drop it in a host's inbox, where its file's owner proves it")


def _holds(posting: Posting, by: str, via: str, key: Ed25519PublicKey) -> bool:
    if posting.attestation is None:
        return False
    try:
        key.verify(base64.b64decode(posting.attestation, validate=True), proof_bytes(posting, by, via))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
