"""Messages on the PostgreSQL store: rows of `ratchet_messages`, delivered once by whichever
supervisor gets them, their senders proven again from the row.

Every command is the real console script on a fresh schema of the session's private server
(tests/pg_cluster.py); time is the file clock. Hostile rows are written by SQL, as a forger
with access to the database would.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from pg_cluster import share_home_key
from waiting import wait_for

RATCHET = str(Path(sys.executable).parent / "ratchet")
REVIEW = """
name: review
version: 1
initial: review
states:
  review: {approvers: [alice, bob, carol, dave], timeout: 1d}
  done: {final: true}
  rejected: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
  - {trigger: reject, source: review, dest: rejected}
"""
VOTE = """
name: vote
version: 1
initial: review
states:
  review: {approvers: [alice, bob, carol], quorum: {approve: 2}, timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    (tmp_path / "clock").write_text("2026-11-27T09:41:00Z")
    (tmp_path / "review.yaml").write_text(REVIEW)
    (tmp_path / "vote.yaml").write_text(VOTE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return clean | {"RATCHET_HOME": str(tmp_path / "home"), "RATCHET_CLOCK_FILE": str(tmp_path / "clock"),
                    "RATCHET_STORE": pg_url}


def ratchet(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    home = Path(env["RATCHET_HOME"])
    return subprocess.run([RATCHET, *args], env=env | extra, cwd=home.parent, capture_output=True, text=True,
                          timeout=120)


def ok(env: dict[str, str], *args: str, **extra: str) -> str:
    out = ratchet(env, *args, **extra)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def records(env: dict[str, str], run_id: str) -> list[dict]:
    return [json.loads(line) for line in ok(env, "tail", run_id, "--json").splitlines()]


def decisions(env: dict[str, str], run_id: str) -> list[dict]:
    return [r for r in records(env, run_id) if r["type"] in ("trigger_received", "trigger_voted", "trigger_refused")]


def rows(env: dict[str, str]) -> list[dict]:
    with psycopg.connect(env["RATCHET_STORE"], autocommit=True) as conn:
        cur = conn.execute("SELECT id, key, run_id, state, reason, via, verified_by, body, attestation"
                           " FROM ratchet_messages ORDER BY id")
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def insert_row(env: dict[str, str], key: str, run_id: str, body: bytes, **columns: object) -> None:
    """A row as a forger with SQL access writes it (no NOTIFY: the next look finds it)."""
    fields = {"key": key, "run_id": run_id, "body": body, "format": "json", "posted_by": "psql"} | columns
    with psycopg.connect(env["RATCHET_STORE"], autocommit=True) as conn:
        conn.execute(f"INSERT INTO ratchet_messages ({', '.join(fields)}) VALUES ({', '.join(['%s'] * len(fields))})",
                     list(fields.values()))


def inbox_files(env: dict[str, str], folder: str = "") -> list[str]:
    where = Path(env["RATCHET_HOME"]) / "inbox" / folder
    return sorted(p.name for p in where.iterdir() if p.is_file()) if where.exists() else []


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def waiting_at(env: dict[str, str], run_id: str) -> int:
    return json.loads(ok(env, "status", run_id, "--json"))[0]["stands_at"]


def signed_body(message: dict, key_path: Path, answers: int) -> bytes:
    """A message signed as `ratchet send --key` signs it (engine.trust.envelope)."""
    from engine.trust.envelope import sign
    from journal.keys import load_private_key

    expires = datetime(2026, 11, 27, 9, 41, tzinfo=UTC) + timedelta(days=1)
    return json.dumps(sign(message, load_private_key(key_path), answers, expires)).encode()


@pytest.mark.slow  # a supervisor and a few commands
def test_a_signed_approve_is_a_row_that_a_running_supervisor_journals_with_no_inbox_file(env, tmp_path):
    home = Path(env["RATCHET_HOME"])
    ok(env, "start", "review.yaml", "--id", "r1")
    ok(env, "supervise", "--once")
    ok(env, "keys", "new", "bob", "--out", str(tmp_path / "bob.key"))
    (home / "people.yaml").write_text("bob: {public_key: keys/bob.pub}\n")
    with open(tmp_path / "supervise.log", "w") as log:
        supervisor = subprocess.Popen([RATCHET, "supervise", "--rescan", "30"], env=env, cwd=tmp_path,
                                      stderr=log, text=True)
    try:
        wait_for(lambda: "supervising 1 runs" in (tmp_path / "supervise.log").read_text(), what="the supervisor up")
        out = ratchet(env, "approve", "r1", "--by", "bob", "--key", str(tmp_path / "bob.key"))
        assert out.returncode == 0 and out.stderr == "", out
        where = out.stdout.strip()
        assert "/messages/" in where and where.startswith("postgresql://"), where
        # a rescan every 30 s: only the row's NOTIFY can wake the supervisor this soon
        wait_for(lambda: json.loads(ok(env, "status", "r1", "--json"))[0]["status"] == "finished", timeout=20,
                 what="the approval journaled")
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=60)
    [row] = rows(env)
    assert where.endswith("/messages/" + row["key"]) and row["state"] == "delivered"
    assert row["via"] is None and row["attestation"] is None  # `ratchet send` proves nothing but its signature
    [received] = decisions(env, "r1")
    assert (received["type"], received["by"], received["via"]) == ("trigger_received", "bob", "signature")
    assert received["source_file"] == row["key"]
    assert json.loads(bytes(row["body"]))["signature"]["value"] == received["signature"]
    assert inbox_files(env) == inbox_files(env, "done") == inbox_files(env, "rejected") == []


@pytest.mark.slow  # a few commands
def test_unsigned_with_people_yaml_is_an_inbox_file_proven_by_its_owner_then_one_row(env, tmp_path):
    """With people.yaml, an unsigned message cannot be proven through the database: `approve`
    writes the inbox file (and says so); the supervisor proves the owner, posts the row with
    its proof signed by the home's key, delivers it and files the file in done/."""
    home = Path(env["RATCHET_HOME"])
    ok(env, "start", "review.yaml", "--id", "r1")
    ok(env, "supervise", "--once")
    (home / "people.yaml").write_text(f"alice: {{unix_user: {me()}}}\n")
    out = ratchet(env, "approve", "r1", "--by", "alice")
    assert out.returncode == 0 and "ratchet: note: written to this host's inbox" in out.stderr, out
    dropped = Path(out.stdout.strip())
    assert dropped.parent == home / "inbox" and dropped.exists()
    assert rows(env) == []
    ok(env, "supervise", "--once")
    [row] = rows(env)
    assert (row["state"], row["via"], row["verified_by"]) == ("delivered", "unix_user", "alice")
    assert row["attestation"] and bytes(row["body"]) == (home / "inbox" / "done" / dropped.name).read_bytes()
    [received] = decisions(env, "r1")
    assert (received["by"], received["verified"], received["via"]) == ("alice", True, "unix_user")
    assert received["source_file"] == row["key"] and row["key"].endswith("~" + dropped.name)
    assert inbox_files(env) == [] and inbox_files(env, "done") == [dropped.name]


@pytest.mark.slow  # three supervisor starts
@pytest.mark.parametrize("crash_at", ["message_posted:1", "lane_delivered:1"])
def test_an_inbox_file_is_one_row_and_one_trigger_when_the_supervisor_is_killed_before_filing_it(env, crash_at):
    """kill -9 of the supervisor (its own crash point: SIGKILL) after the row is posted, or
    after its delivery is journaled, and before the file is filed: the next start posts
    nothing again, journals nothing twice, settles the row and files the file."""
    home = Path(env["RATCHET_HOME"])
    ok(env, "start", "review.yaml", "--id", "r1")
    ok(env, "supervise", "--once")
    (home / "inbox" / "by-hand.json").write_text('{"run": "r1", "trigger": "approve", "by": "alice"}')
    killed = ratchet(env, "supervise", "--once", RATCHET_CRASH_AT=crash_at)
    assert killed.returncode == -signal.SIGKILL, killed
    assert inbox_files(env, "done") == [] and len(rows(env)) == 1  # claimed, posted, not filed
    ok(env, "supervise", "--once")
    [row] = rows(env)
    assert row["state"] == "delivered"
    [received] = decisions(env, "r1")
    assert received["type"] == "trigger_received" and received["source_file"] == row["key"]
    assert inbox_files(env, "done") == ["by-hand.json"] and inbox_files(env) == []
    assert not any((home / "inbox" / ".claimed").rglob("*.json"))


@pytest.mark.slow  # two supervisor starts
def test_a_row_journaled_before_a_kill_is_settled_under_its_key_and_never_applied_twice(env):
    """kill -9 of the supervisor after the row's delivery is journaled and before the row is
    marked: the row is still queued; the next start finds its key in the journal and only
    marks it."""
    ok(env, "start", "review.yaml", "--id", "r1")
    ok(env, "supervise", "--once")
    ok(env, "approve", "r1", "--by", "alice")
    killed = ratchet(env, "supervise", "--once", RATCHET_CRASH_AT="lane_delivered:1")
    assert killed.returncode == -signal.SIGKILL, killed
    [row] = rows(env)
    assert row["state"] == "queued" and [d["source_file"] for d in decisions(env, "r1")] == [row["key"]]
    ok(env, "supervise", "--once")
    assert rows(env)[0]["state"] == "delivered"
    [received] = decisions(env, "r1")
    assert received["type"] == "trigger_received" and received["source_file"] == row["key"]


@pytest.mark.slow  # two supervisors
def test_two_supervisors_on_one_store_deliver_each_row_once(env, tmp_path):
    """Two hosts (two homes, one store, one home key), both running: every approval, posted
    as a row by `approve` or dropped as a file in either host's inbox, is seen by both; each
    is journaled exactly once (the run's single writer and the row's key), every row ends
    delivered, and each file is filed in done/ of the host it was dropped on, whichever
    host delivered it."""
    a, b = Path(env["RATCHET_HOME"]), tmp_path / "hostB"
    ids = [f"r{n}" for n in range(8)]
    for run_id in ids:
        ok(env, "start", "review.yaml", "--id", run_id)
    ok(env, "supervise", "--once")
    share_home_key(a, b)
    supervisors = []
    for home in (a, b):
        log = tmp_path / f"{home.name}.log"
        with open(log, "w") as err:
            supervisors.append(subprocess.Popen([RATCHET, "supervise", "--rescan", "1"], cwd=tmp_path, stderr=err,
                                                env=env | {"RATCHET_HOME": str(home)}, text=True))
        wait_for(lambda log=log: "supervising 8 runs" in log.read_text(), what=f"{home.name}'s supervisor up")
    try:
        for n, run_id in enumerate(ids):  # from either host: half rows, half files
            host = (a, b)[n % 2]
            if n < len(ids) // 2:
                ok(env | {"RATCHET_HOME": str(host)}, "approve", run_id, "--by", "alice")
            else:
                (host / "inbox" / f"{run_id}.json").write_text(f'{{"run": "{run_id}", "trigger": "approve", '
                                                               '"by": "alice"}')
        wait_for(lambda: len(rows(env)) == len(ids) and all(r["state"] == "delivered" for r in rows(env)),
                 timeout=60, what="every row delivered")
        for n, run_id in enumerate(ids[len(ids) // 2:], len(ids) // 2):
            done = (a, b)[n % 2] / "inbox" / "done" / f"{run_id}.json"
            wait_for(done.exists, timeout=30, what=f"{done} filed by its own host")
    finally:
        for supervisor in supervisors:
            supervisor.send_signal(signal.SIGTERM)
        for supervisor in supervisors:
            supervisor.wait(timeout=60)
    keys = {row["run_id"]: row["key"] for row in rows(env)}
    assert len(keys) == len(ids)
    for run_id in ids:
        assert [(d["type"], d["source_file"]) for d in decisions(env, run_id)] == [("trigger_received", keys[run_id])]
    assert all(json.loads(ok(env, "status", i, "--json"))[0]["state"] == "done" for i in ids)


@pytest.mark.slow  # a dozen commands
def test_hostile_rows_are_refused_journaled_with_their_reason_and_nothing_applied(env, tmp_path):
    """A quorum of two (alice, bob, carol) on PostgreSQL, people.yaml with keys (alice by Unix user). Bob's signed vote
    counts; then rows a forger writes by SQL, each refused and journaled with its reason:
    a verified flag set by hand, a proof not signed by the home's key, a signature by
    another key, bob's signed row again (replayed), bob again (the same approver twice),
    dave (a wrong person: not an approver), and an unsigned row. Carol's vote then meets
    the quorum: nothing refused was applied."""
    home = Path(env["RATCHET_HOME"])
    ok(env, "start", "vote.yaml", "--id", "v1")
    ok(env, "supervise", "--once")
    for name in ("bob", "carol", "dave", "mallory"):
        ok(env, "keys", "new", name, "--out", str(tmp_path / f"{name}.key"))
    (home / "people.yaml").write_text("bob: {public_key: keys/bob.pub}\ncarol: {public_key: keys/carol.pub}\n"
                                      f"dave: {{public_key: keys/dave.pub}}\nalice: {{unix_user: {me()}}}\n")
    ok(env, "approve", "v1", "--by", "bob", "--key", str(tmp_path / "bob.key"))
    ok(env, "supervise", "--once")
    at = waiting_at(env, "v1")
    [bobs] = rows(env)
    approve = {"run": "v1", "trigger": "approve"}
    forged_proof = base64.b64encode(os.urandom(64)).decode()
    hostile = {
        "flagged": (json.dumps(approve | {"by": "alice"}).encode(), {"verified_by": "alice", "via": "unix_user"}),
        "bad-proof": (json.dumps(approve | {"by": "alice"}).encode(),
                      {"verified_by": "alice", "via": "unix_user", "attestation": forged_proof}),
        "other-key": (signed_body(approve | {"by": "carol"}, tmp_path / "mallory.key", at), {"via": "signature"}),
        "replayed": (bytes(bobs["body"]), {}),
        "bob-twice": (signed_body(approve | {"by": "bob", "comment": "again"}, tmp_path / "bob.key", at), {}),
        "dave": (signed_body(approve | {"by": "dave"}, tmp_path / "dave.key", at), {}),
        "unsigned": (json.dumps(approve | {"by": "carol"}).encode(), {}),
    }
    for key, (body, columns) in hostile.items():
        insert_row(env, key, "v1", body, answers=at, **columns)
    ok(env, "supervise", "--once")
    refused = {d["source_file"]: d for d in decisions(env, "v1") if d["type"] == "trigger_refused"}
    assert set(refused) == set(hostile)
    why = {key: refused[key]["reason"] for key in hostile}
    assert "no proof of its sender signed by the home's key (it claims 'alice' via unix_user)" in why["flagged"]
    assert "no proof of its sender signed by the home's key" in why["bad-proof"]
    assert "the signature does not verify with carol's key" in why["other-key"]
    assert why["replayed"].startswith("replayed: this signature was already used")
    assert "'bob' already approved 'approve'" in why["bob-twice"]
    assert "'dave' is not an approver of 'review'" in why["dave"]
    assert "unsigned, with no proof of its sender" in why["unsigned"]
    assert all(not refused[key]["verified"] for key in ("flagged", "bad-proof", "other-key", "unsigned"))
    states = {row["key"]: (row["state"], row["reason"]) for row in rows(env)}
    assert all(states[key] == ("refused", why[key]) for key in hostile)
    status = json.loads(ok(env, "status", "v1", "--json"))[0]
    assert (status["state"], status["votes"]) == ("review", {"approve": ["bob"]})
    ok(env, "approve", "v1", "--by", "carol", "--key", str(tmp_path / "carol.key"))
    ok(env, "supervise", "--once")
    last = decisions(env, "v1")[-1]
    assert (last["type"], last["by"], last["votes"]) == ("trigger_received", "carol", ["bob", "carol"])
    assert "verify" and "v1: ok" in ok(env, "verify", "v1")


@pytest.mark.slow  # a supervisor start
def test_the_python_api_posts_rows_too(env, tmp_path):
    """`engine.Ratchet` on PostgreSQL sends as the CLI does: a row in an open home, and
    `wait(after=sent)` sees the supervisor's answer."""
    from engine import Ratchet

    ok(env, "start", "review.yaml", "--id", "r1")
    ok(env, "supervise", "--once")
    client = Ratchet(env["RATCHET_HOME"], store=env["RATCHET_STORE"])
    try:
        sent = client.reject("r1", by="bob", comment="too expensive")
        assert sent.path is None and sent.where.endswith("/messages/" + (sent.posted or "?"))
        assert [(row["key"], row["state"]) for row in rows(env)] == [(sent.posted, "queued")]
        ok(env, "supervise", "--once")
        run = client.wait("r1", after=sent, timeout=30)
        assert (run.status, run.state) == ("finished", "rejected")
    finally:
        client.home.store.close()  # type: ignore[attr-defined]
    assert rows(env)[0]["state"] == "delivered" and inbox_files(env) == []


PARENT = """
name: fan
version: 1
initial: fan
states:
  fan:
    spawn: {branches: {a: kid, b: kid}, join: any}
    timeout: 1d
  joined: {final: true}
transitions:
  - {trigger: joined, source: fan, dest: joined}
"""
KID = """
name: kid
version: 1
initial: wait
states:
  wait: {timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: approve, source: wait, dest: done}
"""


@pytest.mark.slow  # a few supervisor starts
def test_the_engines_own_cancel_of_an_unwanted_child_goes_through_a_row_proven_by_the_home_key(env, tmp_path):
    """With people.yaml, the cancel the supervisor writes for a child its parent no longer
    wants (`by: ratchet`, a file its own Unix user owns) is posted as a row whose proof the
    home's key signs, and is delivered as the engine's own."""
    home = Path(env["RATCHET_HOME"])
    (tmp_path / "fan.yaml").write_text(PARENT)
    (tmp_path / "kid.yaml").write_text(KID)
    ok(env, "start", "fan.yaml", "--id", "fan")
    ok(env, "supervise", "--once")
    (home / "people.yaml").write_text(f"alice: {{unix_user: {me()}}}\n")
    ok(env, "approve", "fan.fan.a", "--by", "alice")  # people.yaml, no key: an inbox file, owner-proven
    ok(env, "supervise", "--once")
    ok(env, "supervise", "--once")  # the cancel the first wrote, if it was not delivered then
    assert json.loads(ok(env, "status", "fan.fan.b", "--json"))[0]["status"] == "cancelled"
    [cancelled] = [r for r in records(env, "fan.fan.b") if r["type"] == "cancelled"]
    assert (cancelled["by"], cancelled["verified"], cancelled["via"]) == ("ratchet", True, "engine")
    engine_rows = [r for r in rows(env) if r["run_id"] == "fan.fan.b"]
    assert [(r["via"], r["state"], bool(r["attestation"])) for r in engine_rows] == [("engine", "delivered", True)]
    assert json.loads(ok(env, "status", "fan", "--json"))[0]["state"] == "joined"
