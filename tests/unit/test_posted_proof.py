"""engine.trust.posted: a row of the messages table proves its sender only by a signature, or
by a posting host's proof signed with the home's key; its flags alone prove nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.trust.envelope import sign
from engine.trust.people import load_people
from engine.trust.posted import attest, prove_posted
from engine.trust.sender import Sender
from journal.keys import public_pem
from journal.messages import Posting

HOME_KEY = Ed25519PrivateKey.generate()
MESSAGE = {"run": "r1", "trigger": "approve", "by": "alice"}


def people(tmp_path):
    (tmp_path / "keys").mkdir(exist_ok=True)
    bob = Ed25519PrivateKey.generate()
    (tmp_path / "keys" / "bob.pub").write_bytes(public_pem(bob))
    (tmp_path / "people.yaml").write_text("alice: {unix_user: alice}\nbob: {public_key: keys/bob.pub}\n")
    return load_people(tmp_path), bob


def posting(message: dict, **fields) -> Posting:
    return Posting(key="k1", run_id="r1", body=json.dumps(message).encode(), posted_by="test", **fields)


def test_a_host_proof_signed_with_the_home_key_proves_the_owner(tmp_path):
    book, _ = people(tmp_path)
    row = attest(posting(MESSAGE), Sender("alice", True, "unix_user"), HOME_KEY)
    assert row.verified_by == "alice" and row.via == "unix_user" and row.attestation
    assert prove_posted(book, MESSAGE, row, HOME_KEY.public_key()) == Sender("alice", True, "unix_user")


def test_flags_without_the_home_keys_signature_prove_nothing(tmp_path):
    book, _ = people(tmp_path)
    flagged = posting(MESSAGE, verified_by="alice", via="unix_user")
    assert "no proof of its sender" in (prove_posted(book, MESSAGE, flagged, HOME_KEY.public_key()).problem or "")
    other = attest(posting(MESSAGE), Sender("alice", True, "unix_user"), Ed25519PrivateKey.generate())
    assert prove_posted(book, MESSAGE, other, HOME_KEY.public_key()).problem
    good = attest(posting(MESSAGE), Sender("alice", True, "unix_user"), HOME_KEY)
    altered = msgspec.structs.replace(good, body=good.body.replace(b"approve", b"reject_"))
    assert prove_posted(book, MESSAGE, altered, HOME_KEY.public_key()).problem  # the proof covers the bytes
    moved = msgspec.structs.replace(good, key="k2")
    assert prove_posted(book, MESSAGE, moved, HOME_KEY.public_key()).problem  # ...and the row's key
    later = msgspec.structs.replace(good, answers=9)
    assert prove_posted(book, MESSAGE, later, HOME_KEY.public_key()).problem  # ...and the wait it answers


def test_a_signed_row_is_judged_by_its_signature_alone(tmp_path):
    book, bob = people(tmp_path)
    signed = sign({**MESSAGE, "by": "bob"}, bob, 3, datetime(2026, 12, 1, tzinfo=UTC))
    proven = prove_posted(book, signed, posting(signed), HOME_KEY.public_key())
    assert (proven.verified, proven.via, proven.answers) == (True, "signature", 3)
    forged = sign({**MESSAGE, "by": "bob"}, Ed25519PrivateKey.generate(), 3, datetime(2026, 12, 1, tzinfo=UTC))
    assert "does not verify" in (prove_posted(book, forged, posting(forged), HOME_KEY.public_key()).problem or "")


def test_an_open_home_takes_the_row_at_its_word_and_a_hosts_refusal_stands(tmp_path):
    assert prove_posted(None, MESSAGE, posting(MESSAGE), HOME_KEY.public_key()) == Sender("alice")
    refused = attest(posting(MESSAGE), Sender("alice", problem="not verified: owned by mallory"), HOME_KEY)
    assert prove_posted(None, MESSAGE, refused, HOME_KEY.public_key()).problem == "not verified: owned by mallory"
