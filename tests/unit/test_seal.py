"""journal.seal and the home key: what is signed, how a seal is checked, and the key made once.

Seals are built on real journals written by the real writer, so a seal that covers
anything else than the bytes on disk shows here.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from journal import JournalWriter, Sealed, StepStarted, Waiting, read, verify
from journal.keys import key_id, load_or_create_private_key, load_private_key, load_public_key, write_public_key
from journal.reader import line_hash
from journal.seal import check, message, seal_after, sign, signed_by

from journal_builders import run_started, step_batch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
ROOT = Path(__file__).resolve().parents[2]


def test_the_signed_bytes_are_four_plain_lines():
    assert message("renewal-acme", 5, "ab" * 32) == (
        b"ratchet seal v1\nrun renewal-acme\nseq 5\nsha256 " + b"ab" * 32 + b"\n")


def sealed_journal(path: Path, key: Ed25519PrivateKey) -> list[Sealed]:
    """A journal of run r1 with two seals, each appended in the batch it covers (as the
    engine does); returns the seals, as the writer filled them in."""
    seals = []
    with JournalWriter(path, "r1", create=True) as writer:
        for batch in ([run_started("r1", ts="2026-11-27T09:00:00Z"), *step_batch("a", key="r1/a/1"),
                       Waiting(state="a", triggers=["go"])],
                      [*step_batch("a", "b", key="r1/a/2"), Waiting(state="b", triggers=["go"])]):
            for record in batch:
                record.ts = record.ts or "2026-11-27T09:00:01Z"
            seal = seal_after(batch, writer.cursor, key, "r1")
            seal.ts = "2026-11-27T09:00:02Z"
            writer.append_many([*batch, seal])
            seals.append(seal)
    return seals


def test_a_seal_covers_exactly_the_line_the_writer_wrote_before_it(tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "r1.jsonl"
    seals = sealed_journal(path, key)
    lines = path.read_bytes().splitlines()
    for seal in seals:
        assert (seal.through, seal.seq) == (seal.seq - 1, seal.through + 1)
        assert seal.head == line_hash(lines[seal.through - 1]) == seal.prev
        assert seal.key == key_id(key) and signed_by(seal, "r1", key.public_key())
        assert not signed_by(seal, "r2", key.public_key())  # the run's id is signed too
    records = read(path).records
    assert verify(path).ok
    result = check(records, "r1", key.public_key(), side=seals[-1])
    assert (result.ok, result.seals, result.through, result.records) == (True, 2, 10, 11), result
    assert result.note() == "sealed through line 10"


def test_forged_wrong_key_and_moved_seals_fail_at_their_line(tmp_path):
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    seals = sealed_journal(tmp_path / "r1.jsonl", key)
    records = read(tmp_path / "r1.jsonl").records
    first = seals[0]

    forged = Sealed(seq=first.seq, ts=first.ts, prev=first.prev, through=first.through, head=first.head,
                    key=first.key, sig=base64.b64encode(os.urandom(64)).decode())
    result = check([*records[:first.seq - 1], forged, *records[first.seq:]], "r1", key.public_key(), seals[-1])
    assert (result.ok, result.line) == (False, first.seq)
    assert "seal signature does not verify: lines 1-5 changed since they were sealed, or the seal is forged" in \
        result.problem

    result = check(records, "r1", other.public_key(), None)
    assert (result.ok, result.line) == (False, first.seq)
    assert f"sealed by key {key_id(key)}, not by the key given ({key_id(other)})" in result.problem

    result = check(records, "r1", None, None)
    assert not result.ok and "no public key to check it" in result.problem

    stale = Sealed(seq=first.seq, ts=first.ts, prev="0" * 64, through=first.through, head=first.head,
                   key=first.key, sig=first.sig)  # its line before was changed: prev no longer its head
    result = check([*records[:first.seq - 1], stale, *records[first.seq:]], "r1", key.public_key(), seals[-1])
    assert (result.ok, result.line) == (False, first.seq) and "does not match the line before it" in result.problem


def test_the_side_file_catches_a_cut_back_journal_but_not_one_cut_with_it(tmp_path):
    key = Ed25519PrivateKey.generate()
    first, last = sealed_journal(tmp_path / "r1.jsonl", key)
    records = read(tmp_path / "r1.jsonl").records
    cut = records[:first.seq + 2]  # cut back to before the last seal

    result = check(cut, "r1", key.public_key(), side=last)
    assert (result.ok, result.line) == (False, len(cut))
    assert "the journal ends at line 8, but the home's latest seal" in result.problem
    assert "sealed it through line 10 (seal at line 11): lines were cut off its end" in result.problem

    # What it cannot see: the side file replaced by the older seal the journal was cut back to.
    assert check(cut, "r1", key.public_key(), side=first).ok
    # An older side file with the whole journal is what a crash between the two writes leaves: fine.
    assert check(records, "r1", key.public_key(), side=first).ok

    result = check(records, "r1", key.public_key(), side=None)
    assert not result.ok and "seals/r1.json is missing" in result.problem

    other = sign(Ed25519PrivateKey.generate(), "r1", last.through, last.head)
    other.seq = last.seq
    result = check(records, "r1", key.public_key(), side=other)
    assert not result.ok and "is not validly signed by the key given" in result.problem


def test_a_journal_without_seals_is_unsealed_not_broken():
    for path in FIXTURES.glob("*.jsonl"):
        if path.with_suffix(".pub").exists():
            continue
        records = read(path).records
        result = check(records, records[0].run_id, Ed25519PrivateKey.generate().public_key(), side=None)
        assert result.ok and not result.sealed and result.note() == "unsealed", path.name


def test_the_sealed_fixture_keeps_verifying_with_its_key():
    path = FIXTURES / "renewal_sealed_retried_approved.jsonl"
    records = read(path).records
    seals = [r for r in records if isinstance(r, Sealed)]
    public = load_public_key(path.with_suffix(".pub"))
    result = check(records, "renewal-umbrella", public, side=seals[-1])
    assert result.ok and result.seals == len(seals) == 5 and result.through == len(records) - 1


def test_the_seal_covers_a_batch_a_step_started_ends_too(tmp_path):
    """seal_after works for any batch (the engine decides when): here one that is no rest."""
    key = Ed25519PrivateKey.generate()
    with JournalWriter(tmp_path / "r1.jsonl", "r1", create=True) as writer:
        batch = [run_started("r1", ts="2026-11-27T09:00:00Z"),
                 StepStarted(state="a", attempt=1, idempotency_key="k", ts="2026-11-27T09:00:00Z")]
        seal = seal_after(batch, writer.cursor, key, "r1")
        seal.ts = "2026-11-27T09:00:00Z"
        writer.append_many([*batch, seal])
    assert check(read(tmp_path / "r1.jsonl").records, "r1", key.public_key(), seal).ok
    with pytest.raises(ValueError, match="needs its ts"):
        seal_after([StepStarted(state="a", attempt=2, idempotency_key="k")], writer.cursor, key, "r1")


# --- the home key -----------------------------------------------------------------------------


def test_the_key_is_made_once_private_and_durable_and_then_only_loaded(tmp_path):
    path = tmp_path / "home" / "keys" / "home.key"
    key = load_or_create_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert key_id(load_or_create_private_key(path)) == key_id(key) == key_id(load_private_key(path))
    write_public_key(path.with_name("home.pub"), key)
    write_public_key(path.with_name("home.pub"), Ed25519PrivateKey.generate())  # never replaced
    assert key_id(load_public_key(path.with_name("home.pub"))) == key_id(key)
    assert sorted(p.name for p in path.parent.iterdir()) == ["home.key", "home.pub"]  # no temporary left


def test_a_process_that_loses_the_race_loads_the_winners_key(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "home.key"
    winner = load_or_create_private_key(path)
    monkeypatch.setattr(os.path, "lexists", lambda _p: False)  # it looked just before the winner wrote
    assert key_id(load_or_create_private_key(path)) == key_id(winner)
    assert sorted(p.name for p in path.parent.iterdir()) == ["home.key"]


CHILD = """
import sys, time
from pathlib import Path
from journal.keys import key_id, load_or_create_private_key
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
print(key_id(load_or_create_private_key(Path(sys.argv[1]))))
"""


def test_processes_starting_at_once_end_with_one_key(tmp_path):
    path, go = tmp_path / "keys" / "home.key", tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(go)], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True) for _ in range(6)]
    assert all(child.stdout.readline() == "ready\n" for child in children)  # all on the start line
    go.touch()
    ids = {child.communicate(timeout=60)[0].strip() for child in children}
    assert all(child.returncode == 0 for child in children)
    assert ids == {key_id(load_private_key(path))}
    assert sorted(p.name for p in path.parent.iterdir()) == ["home.key"]

