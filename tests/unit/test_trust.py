"""The people file and the signing envelope: every mistake located, every byte of a message signed.

The envelope is checked against tools outside Ratchet: a message signed with `openssl
pkeyutl` over the bytes `jq -cjS` makes is accepted, as README "Who decided" says.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.definition.loader import machine_from_definition
from engine.errors import DefinitionError
from engine.trust.envelope import sign, signature_holds, signed_bytes
from engine.trust.people import PeopleBook, PeopleFileError, load_people
from engine.trust.sender import FileFacts, prove
from journal.keys import load_public_key, new_private_key, public_pem

WHEN = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    key = new_private_key(tmp_path / "bob.key")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "bob.pub").write_bytes(public_pem(key))
    return tmp_path


def problems(home: Path, text: str) -> list[str]:
    (home / "people.yaml").write_text(text)
    with pytest.raises(PeopleFileError) as caught:
        load_people(home)
    return caught.value.problems


# --- people.yaml ------------------------------------------------------------------------------


def test_no_people_file_is_an_open_home(home: Path) -> None:
    assert load_people(home) is None
    assert prove(None, {"run": "r1", "by": "anyone"}, FileFacts(0, 1, 0o100644)).verified is False


def test_a_valid_people_file_loads_its_keys(home: Path) -> None:
    (home / "people.yaml").write_text("alice: {unix_user: alice}\nbob: {public_key: keys/bob.pub}\n")
    people = load_people(home)
    assert people is not None and set(people.persons) == {"alice", "bob"} and set(people.keys) == {"bob"}


def test_every_mistake_of_a_people_file_is_reported_with_its_line(home: Path) -> None:
    found = problems(home, "alice: {unix_user: alice}\n"
                           "Bad Name!: {unix_user: x}\n"
                           "carol: {}\n"
                           "dave: {public_key: /etc/passwd}\n"
                           "erin: {unix_user: alice}\n"
                           "fred: {unix_user: fred, email: f@x}\n")
    text = "\n".join(found)
    assert "people.yaml:2: Bad Name!: invalid name 'Bad Name!'" in text
    assert "people.yaml:3: carol: give unix_user, public_key or both" in text
    assert "people.yaml:4: dave.public_key: public_key '/etc/passwd' must be a path inside the home" in text
    assert "people.yaml:6: fred.email: unknown field" in text
    assert all("; hint: " in line for line in found)


def test_a_missing_key_and_a_shared_unix_user_are_mistakes_of_the_file(home: Path) -> None:
    found = problems(home, "alice: {unix_user: alice}\nzed: {public_key: keys/zed.pub}\nerin: {unix_user: alice}\n")
    assert any(line.startswith(f"{home}/people.yaml:2: zed.public_key: ") and "cannot read key file" in line
               for line in found), found
    assert any(f"{home}/people.yaml:3: erin.unix_user: Unix user 'alice' is also alice's" in line for line in found)


def test_the_book_reloads_a_changed_file_and_a_fixed_key(home: Path) -> None:
    book = PeopleBook(home)
    assert book.current() is None
    (home / "people.yaml").write_text("zed: {public_key: keys/zed.pub}\n")
    with pytest.raises(PeopleFileError):
        book.current()
    (home / "keys" / "zed.pub").write_bytes((home / "keys" / "bob.pub").read_bytes())  # the fix is in a key file
    people = book.current()
    assert people is not None and set(people.keys) == {"zed"}


# --- the envelope ----------------------------------------------------------------------------


def test_a_signature_covers_every_field_and_the_wait_and_the_expiry(home: Path) -> None:
    key = new_private_key(home / "k")
    message = sign({"run": "r1", "trigger": "approve", "by": "bob", "data": {"seats": 40}}, key, 5, WHEN)
    assert message["signature"]["answers"] == 5 and message["signature"]["expires"] == "2026-11-30T21:00:00Z"
    assert signature_holds(message, key.public_key())
    for path, value in ((("data", "seats"), 41), (("run",), "r2"), (("trigger",), "reject"), (("by",), "eve"),
                        (("signature", "answers"), 9), (("signature", "expires"), "2027-01-01T00:00:00Z")):
        changed = json.loads(json.dumps(message))
        target = changed
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        assert not signature_holds(changed, key.public_key()), path
    added = {**message, "comment": "and more"}
    assert not signature_holds(added, key.public_key())
    assert not signature_holds(message, new_private_key(home / "other").public_key())


def test_a_message_signed_with_openssl_and_jq_is_accepted(home: Path, tmp_path: Path) -> None:
    """The envelope is reproducible without Ratchet: canonical JSON by jq, Ed25519 by openssl."""
    if not (shutil.which("openssl") and shutil.which("jq")):
        pytest.skip("openssl and jq are needed to sign outside Ratchet")
    pem, pub = tmp_path / "outside.pem", tmp_path / "outside.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(pem)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(pem), "-pubout", "-out", str(pub)], check=True)
    message = {"run": "r1", "trigger": "approve", "by": "bob", "comment": "d'accord, 40 sièges",
               "data": {"seats": 40, "tags": ["a", "b"]},
               "signature": {"answers": 7, "expires": "2026-12-01T00:00:00Z"}}
    body = subprocess.run(["jq", "-cjS", "del(.signature.value)"], input=json.dumps(message).encode(),
                          capture_output=True, check=True).stdout
    assert body == signed_bytes(message)
    (tmp_path / "body").write_bytes(body)
    raw = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", str(pem), "-rawin", "-in", str(tmp_path / "body")],
                         capture_output=True, check=True).stdout
    message["signature"]["value"] = base64.b64encode(raw).decode()
    assert signature_holds(message, load_public_key(pub))


def test_prove_names_what_is_wrong(home: Path) -> None:
    (home / "people.yaml").write_text("bob: {public_key: keys/bob.pub}\nann: {unix_user: root}\n")
    people = load_people(home)
    mine = FileFacts(uid=0, nlink=1, mode=0o100644)
    assert prove(people, {"by": "ann"}, mine).via == "unix_user"
    assert "hard links" in (prove(people, {"by": "ann"}, FileFacts(0, 2, 0o100644)).problem or "")
    assert "writable by others" in (prove(people, {"by": "ann"}, FileFacts(0, 1, 0o100664)).problem or "")
    assert "recognised by signature only" in (prove(people, {"by": "bob"}, mine).problem or "")
    assert "not in people.yaml" in (prove(people, {"by": "eve"}, mine).problem or "")
    signed = sign({"run": "r1", "by": "ann", "trigger": "approve"}, new_private_key(home / "a"), 1, WHEN)
    assert "gives 'ann' no public_key" in (prove(people, signed, mine).problem or "")


# --- who may act, in definitions ---------------------------------------------------------------


DEFINITION = {
    "name": "m", "version": 1, "initial": "review",
    "states": {"review": {"approvers": ["alice", "bob"], "timeout": 60}, "done": {"final": True}},
    "transitions": [{"trigger": "approve", "source": "review", "dest": "done"},
                    {"trigger": "timeout", "source": "review", "dest": "done"}],
}


def definition(**review: object) -> dict:
    copy = json.loads(json.dumps(DEFINITION))
    copy["states"]["review"].update(review)
    return copy


def test_who_may_act_is_validated_with_the_definition(tmp_path: Path) -> None:
    for fields, words in (({"quorum": {"approve": 3}}, "could never be met"),
                          ({"quorum": {"aprove": 1}}, "quorum names 'aprove'"),
                          ({"quorum": {"approve": 0}}, "greater than or equal to 1"),
                          ({"resolvers": []}, "resolvers is empty")):
        with pytest.raises(DefinitionError) as caught:
            machine_from_definition(definition(**fields), tmp_path)
        assert words in str(caught.value), (fields, str(caught.value))
    with pytest.raises(DefinitionError, match="quorum, not_starter cannot be set on a task state"):
        task = json.loads(json.dumps(DEFINITION))
        task["states"]["review"] = {"action": "os:getcwd", "quorum": {"approve": 1}, "not_starter": True}
        machine_from_definition(task, tmp_path)
    with pytest.raises(DefinitionError, match="operators is empty"):
        machine_from_definition({**DEFINITION, "operators": []}, tmp_path)


def test_a_definition_without_the_new_fields_keeps_its_hash(tmp_path: Path) -> None:
    plain = machine_from_definition(DEFINITION, tmp_path)
    assert "quorum" not in plain.definition["states"]["review"] and "operators" not in plain.definition
    same = machine_from_definition(definition(not_starter=False), tmp_path)
    assert same.hash == plain.hash  # false is the default: not written into the pinned form
    assert machine_from_definition(definition(not_starter=True), tmp_path).hash != plain.hash


def test_names_people_yaml_lacks_are_found_for_validate(home: Path, tmp_path: Path) -> None:
    from engine.trust.people import strangers

    (home / "people.yaml").write_text("alice: {unix_user: alice}\nbob: {public_key: keys/bob.pub}\n")
    people = load_people(home)
    canonical = machine_from_definition({**definition(resolvers=["carol"]), "operators": ["ops"]}, tmp_path).definition
    found = strangers(people, canonical)
    assert len(found) == 2 and "operators of machine name 'ops'" in found[0]
    assert "resolvers of state 'review' name 'carol'" in found[1]
