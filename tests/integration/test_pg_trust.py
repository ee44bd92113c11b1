"""Seals and signed decisions on the PostgreSQL store, as an operator runs them: two hosts
(two homes) sharing one database, file journals imported into it, rows forged by SQL.

Every command is the real console script on a fresh schema of the session's private
server (tests/pg_cluster.py); time is the file clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")
SIMPLE = """
name: simple
version: 1
initial: review
states:
  review: {timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""


@pytest.fixture
def base(tmp_path: Path, pg_url: str) -> dict[str, str]:
    (tmp_path / "clock").write_text("2026-11-27T09:41:00Z")
    (tmp_path / "simple.yaml").write_text(SIMPLE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return clean | {"RATCHET_CLOCK_FILE": str(tmp_path / "clock"), "RATCHET_STORE": pg_url}


def ratchet(env: dict[str, str], home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RATCHET, *args], env=env | {"RATCHET_HOME": str(home)} | extra, cwd=home.parent,
                          capture_output=True, text=True, timeout=120)


def ok(env: dict[str, str], home: Path, *args: str, **extra: str) -> str:
    out = ratchet(env, home, *args, **extra)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout + out.stderr


@pytest.mark.slow  # a dozen subprocesses
def test_a_second_host_never_seals_with_a_key_of_its_own(base, tmp_path):
    """Host A starts the run; host B (its own home on the same database) would seal the
    approval with a new key of its own, and `verify` would then fail on both hosts. B
    refuses to seal until it holds the store's key, then seals with it."""
    a, b = tmp_path / "hostA", tmp_path / "hostB"
    ok(base, a, "start", "simple.yaml", "--id", "m1")
    assert "waits in 'review'" in ok(base, a, "supervise", "--once")
    b.mkdir()
    ok(base, b, "approve", "m1", "--by", "bob")
    refused = ratchet(base, b, "supervise", "--once")
    assert refused.returncode == 1, refused.stderr
    assert "sealed with key" in refused.stderr and "copy" in refused.stderr, refused.stderr
    assert not (b / "keys" / "home.key").exists()
    assert json.loads(ok(base, a, "status", "m1", "--json"))[0]["state"] == "review"
    (b / "keys").mkdir(mode=0o700)
    for name in ("home.key", "home.pub"):
        (b / "keys" / name).write_bytes((a / "keys" / name).read_bytes())
    (b / "keys" / "home.key").chmod(0o600)
    assert "applied" in ok(base, b, "supervise", "--once")
    for home in (a, b):
        assert "m1: ok (7 records; sealed through line 6)" in ok(base, home, "verify", "m1")


@pytest.mark.slow  # a few subprocesses
def test_imported_file_journals_keep_their_seals_checked_on_the_database(base, tmp_path):
    """README's move to PostgreSQL: `ratchet import ~/.ratchet/runs/*.jsonl` from the same home.
    The run's latest seal comes along (the home's side file), so `verify` passes on the
    database, and still sees a journal cut back before it."""
    home = tmp_path / "home"
    ok(base, home, "run", "simple.yaml", "--id", "imp1", RATCHET_STORE="file:")
    ok(base, home, "approve", "imp1", "--by", "bob", RATCHET_STORE="file:")
    ok(base, home, "supervise", "--once", RATCHET_STORE="file:")
    ok(base, home, "run", "simple.yaml", "--id", "imp2", RATCHET_STORE="file:")
    assert "imp1: ok (7 records; sealed through line 6)" in ok(base, home, "verify", RATCHET_STORE="file:")
    ok(base, home, "import", str(home / "runs" / "imp1.jsonl"), str(home / "runs" / "imp2.jsonl"))
    out = ok(base, home, "verify")
    assert "imp1: ok (7 records; sealed through line 6)" in out and "imp2: ok (3 records; sealed through line 2)" in out
    ok(base, home, "run", "simple.yaml", "--id", "imp4", RATCHET_STORE="file:")
    ok(base, home, "approve", "imp4", "--by", "bob", RATCHET_STORE="file:")
    ok(base, home, "supervise", "--once", RATCHET_STORE="file:")
    cut = home / "runs" / "imp4.jsonl"  # cut back before its last seal (the chain holds); seals/ keeps it
    cut.write_bytes(b"".join(cut.read_bytes().splitlines(keepends=True)[:3]))
    ok(base, home, "import", str(cut))
    out = ratchet(base, home, "verify", "imp4")
    assert out.returncode == 1 and "lines were cut off its end" in out.stdout, out.stdout


@pytest.mark.slow  # a dozen subprocesses
def test_on_the_database_a_signed_vote_counts_once_and_a_decision_forged_in_the_rows_is_caught(base, tmp_path):
    """people.yaml with bob's key; a quorum of two on PostgreSQL: bob's signed vote counts, the
    same file again is refused as replayed, carol's vote meets the quorum. Then a forger with
    SQL access makes carol's approval mallory's, re-chains every line and re-points the seal
    heads: `verify`, `verify --key` and the report all name the seal."""
    import hashlib

    import psycopg

    home = tmp_path / "home"
    (tmp_path / "vote.yaml").write_text(
        "name: vote\nversion: 1\ninitial: review\nstates:\n"
        "  review: {approvers: [bob, carol], quorum: {approve: 2}, timeout: 1d}\n  done: {final: true}\n"
        "transitions:\n  - {trigger: approve, source: review, dest: done}\n")
    ok(base, home, "start", "vote.yaml", "--id", "v1")
    ok(base, home, "supervise", "--once")
    for name in ("bob", "carol"):
        ok(base, home, "keys", "new", name, "--out", str(tmp_path / f"{name}.key"))
    (home / "people.yaml").write_text("bob: {public_key: keys/bob.pub}\ncarol: {public_key: keys/carol.pub}\n")
    ok(base, home, "approve", "v1", "--by", "bob", "--key", str(tmp_path / "bob.key"))  # signed: a row
    with psycopg.connect(base["RATCHET_STORE"], autocommit=True) as conn:
        [(copy,)] = conn.execute("SELECT body FROM ratchet_messages").fetchall()
    ok(base, home, "supervise", "--once")
    (home / "inbox" / "copy.json").write_bytes(bytes(copy))  # the signed bytes again, as an inbox file
    assert "replayed: this signature was already used" in ok(base, home, "supervise", "--once")
    ok(base, home, "approve", "v1", "--by", "carol", "--key", str(tmp_path / "carol.key"))
    ok(base, home, "supervise", "--once")
    records = [json.loads(line) for line in ok(base, home, "tail", "v1", "--json").splitlines()]
    decided = [(r["type"], r["by"], r.get("via")) for r in records if r["type"].startswith("trigger_")]
    assert decided == [("trigger_voted", "bob", "signature"), ("trigger_refused", "bob", "signature"),
                       ("trigger_received", "carol", "signature")]
    n = len(records)
    assert f"v1: ok ({n} records; sealed through line {n - 1})" in ok(base, home, "verify")
    ok(base, home, "keys", "export", "-o", str(tmp_path / "auditor.pub"))

    lines = []
    for record in records:
        if record["type"] == "trigger_received":
            record["by"] = "mallory"
        if lines:
            record["prev"] = hashlib.sha256(lines[-1]).hexdigest()
            if record["type"] == "sealed" and record["seq"] > 1:
                record["head"] = record["prev"]
        lines.append(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode())
    with psycopg.connect(base["RATCHET_STORE"], autocommit=True) as conn, conn.transaction():
        for seq, line in enumerate(lines, 1):
            conn.execute("UPDATE ratchet_records SET line = %s WHERE run_id = 'v1' AND seq = %s", [line, seq])
        conn.execute("UPDATE ratchet_runs SET head = %s WHERE run_id = 'v1'", [hashlib.sha256(lines[-1]).hexdigest()])
    assert '"by":"mallory"' in ok(base, home, "tail", "v1", "--json")
    for extra in ((), ("--key", str(tmp_path / "auditor.pub"))):
        out = ratchet(base, home, "verify", "v1", *extra)
        assert out.returncode == 1 and f":{n}: seal signature does not verify" in out.stdout, out.stdout
    page = ok(base, home, "report", "v1", "-o", "-")
    assert "SEAL BROKEN" in page and f"line {n}: seal signature does not verify" in page
