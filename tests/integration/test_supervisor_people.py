"""Who decided, attacked: a real supervisor refuses every sender it cannot prove, and every
person who may not do what they ask — journaled, filed with the reason, nothing applied.

Each hostile file is dropped into the inbox of a running `ratchet supervise`; the test
then checks four things: the file is in inbox/rejected/ beside its .error.txt, the run's
journal has a `trigger_refused` naming the file and the reason, the run did not move,
and the side effect behind the approval (a ledger line of the fake service) never ran.
The Unix-owner tests write files as real Unix users made by the test (`useradd`; skipped
when not root).
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from engine.run.runner import Runner

from people_harness import FOUR_EYES, Trust, add_user, open_inbox_to_everyone, remove_user, write_as
from waiting import wait_for


@pytest.fixture(scope="module")
def four_eyes(machine_dir):
    path = machine_dir / "four_eyes.yaml"
    if not path.exists():
        path.write_text(FOUR_EYES)
    return path


@pytest.fixture(scope="module")
def unix_users():
    if os.geteuid() != 0:
        pytest.skip("needs root: the test creates Unix users (useradd) and writes files as them")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    users = {name: f"rt-{name}-{os.getpid()}" for name in ("alice", "mallory")}
    try:
        for user in users.values():
            remove_user(user)  # a leftover of a killed earlier session with the same pid
            add_user(user)
        yield users
    finally:
        for user in users.values():
            remove_user(user)


def start_four_eyes(env, four_eyes, run_id: str, by: str = "alice") -> str:
    return Runner(env.home, clock=env.clock, machines_dir=env.dir).start(four_eyes, {}, run_id=run_id, by=by)


def ran(env, state: str) -> list[dict]:
    return [line for line in env.ledger_lines() if line["state"] == state]


def assert_refused(trust: Trust, run: str, name: str, *words: str) -> dict:
    """`name` was filed in rejected/ with a reason holding `words`, and journaled as refused."""
    where, reason = trust.outcome(name)
    assert where == "rejected", f"{name} was applied"
    for word in words:
        assert word in reason, reason
    record = next(r for r in trust.refusals(run) if r["source_file"].endswith("~" + name))
    assert all(word in record["reason"] for word in words), record
    return record


# --- the file's owner --------------------------------------------------------------------------


def test_a_file_owned_by_another_unix_user_is_refused_and_its_owner_is_believed(env, unix_users):
    trust = Trust(env, unix={"alice": unix_users["alice"], "mallory": unix_users["mallory"]})
    open_inbox_to_everyone(env)
    env.start("r1")
    env.supervise()
    env.wait_status("r1", "waiting", "review")
    approve = {"run": "r1", "trigger": "approve", "by": "alice"}

    forged = trust.drop(approve, as_user=unix_users["mallory"])  # mallory writes alice's approval
    record = assert_refused(trust, "r1", forged, f"owned by Unix user '{unix_users['mallory']}'", "not verified")
    assert record["by"] == "alice" and record["verified"] is False
    unsigned = trust.drop(approve)  # root is nobody in people.yaml, and alice's key did not sign it
    assert_refused(trust, "r1", unsigned, "owned by Unix user 'root'")
    name = "loose.json"  # alice's own file, but anyone could have rewritten it
    write_as(unix_users["alice"], env.home.inbox_tmp, env.home.inbox, name, b'{"run":"r1","trigger":"approve",'
             b'"by":"alice"}', mode=0o666)
    assert_refused(trust, "r1", name, "writable by others")
    assert env.row("r1").status == "waiting" and ran(env, "send") == []  # nothing applied, nothing sent

    real = trust.drop(approve, as_user=unix_users["alice"])
    assert trust.outcome(real) == ("done", "")
    env.wait_status("r1", "finished", "done")
    received = next(r for r in env.records("r1") if r["type"] == "trigger_received")
    assert (received["by"], received["verified"], received["via"]) == ("alice", True, "unix_user")
    assert len(ran(env, "send")) == 1

    os.link(env.home.inbox_done / real, env.home.inbox / "linked.json")  # alice's file again, by a link
    assert_refused(trust, "r1", "linked.json", "hard links")


# --- signatures --------------------------------------------------------------------------------


def test_forged_wrong_key_expired_and_unknown_signatures_are_refused(env):
    trust = Trust(env)
    env.start("r1")
    env.supervise()
    env.wait_status("r1", "waiting", "review")

    tampered = trust.signed("r1", "alice", trigger="approve", comment="ok for 10 seats")
    tampered["comment"] = "ok for 1000 seats"  # altered after signing
    assert_refused(trust, "r1", trust.drop(tampered), "signature does not verify with alice's key")
    wrong_key = trust.signed("r1", "alice", key="mallory", trigger="approve")
    assert_refused(trust, "r1", trust.drop(wrong_key), "signature does not verify with alice's key")
    expired = trust.signed("r1", "alice", trigger="approve", expires_in=-1)
    assert_refused(trust, "r1", trust.drop(expired), "signature expired")
    stranger = trust.signed("r1", "zed", key="mallory", trigger="approve")
    assert_refused(trust, "r1", trust.drop(stranger), "'zed' is not in people.yaml")
    not_approver = trust.signed("r1", "mallory", trigger="approve")  # proven, but not an approver
    assert_refused(trust, "r1", trust.drop(not_approver), "'mallory' is not an approver of 'review'")
    assert env.row("r1").status == "waiting" and ran(env, "send") == []

    good = trust.drop(trust.signed("r1", "alice", trigger="approve"))
    assert trust.outcome(good) == ("done", "")
    env.wait_status("r1", "finished", "done")
    received = next(r for r in env.records("r1") if r["type"] == "trigger_received")
    assert (received["verified"], received["via"]) == (True, "signature") and received["signature"]
    assert len(ran(env, "send")) == 1


def test_a_signature_for_an_earlier_wait_is_refused_on_a_later_one(env, four_eyes):
    trust = Trust(env)
    start_four_eyes(env, four_eyes, "r1")
    env.supervise()
    first = env.wait_status("r1", "waiting", "review")
    early = trust.signed("r1", "bob", trigger="reject", expires_in=3 * 86400)  # for the wait open now...
    env.clock.advance(86400 + 1)  # ...which times out and escalates
    env.wait_status("r1", "escalated", "review")
    retry = trust.drop(trust.signed("r1", "carol", resolve="retry"))
    assert trust.outcome(retry) == ("done", "")
    later = env.wait_status("r1", "waiting", "review")  # the same state, a new wait
    assert later.stands_at > first.stands_at
    assert_refused(trust, "r1", trust.drop(early), f"answers record #{first.stands_at}",
                   f"waits on record #{later.stands_at}")
    assert env.row("r1").status == "waiting"


def test_a_replayed_file_the_same_approver_twice_and_the_starter_are_refused_toward_a_quorum(env, four_eyes):
    trust = Trust(env)
    start_four_eyes(env, four_eyes, "r1", by="alice")
    env.supervise()
    env.wait_status("r1", "waiting", "review")

    bob = trust.signed("r1", "bob", trigger="approve", comment="fine")
    assert trust.outcome(trust.drop(bob)) == ("done", "")
    wait_for(lambda: env.row("r1").votes == {"approve": ["bob"]}, what="bob's approval to count")
    assert env.cli("status").stdout.decode().count("approve 1 of 2 (bob)") == 1
    assert_refused(trust, "r1", trust.drop(bob), "replayed: this signature was already used")  # the same file
    again = trust.signed("r1", "bob", trigger="approve", comment="really")  # a new signature, the same person
    assert_refused(trust, "r1", trust.drop(again), "'bob' already approved 'approve'", "the same person counts once")
    starter = trust.signed("r1", "alice", trigger="approve")
    assert_refused(trust, "r1", trust.drop(starter), "'alice' started the run", "not_starter")
    assert env.row("r1").status == "waiting" and env.row("r1").votes == {"approve": ["bob"]}
    assert ran(env, "charge") == []

    assert trust.outcome(trust.drop(trust.signed("r1", "carol", trigger="approve"))) == ("done", "")
    env.wait_status("r1", "finished", "done")
    decided = [(r["type"], r["by"]) for r in env.records("r1") if r["type"] in ("trigger_voted", "trigger_received")]
    assert decided == [("trigger_voted", "bob"), ("trigger_received", "carol")]
    assert next(r for r in env.records("r1") if r["type"] == "trigger_received")["votes"] == ["bob", "carol"]
    assert len(ran(env, "charge")) == 1


# --- who may do what -------------------------------------------------------------------------


def test_resolvers_and_operators_are_enforced(env, four_eyes, machine_dir):
    trust = Trust(env)
    start_four_eyes(env, four_eyes, "r1")
    env.supervise()
    env.wait_status("r1", "waiting", "review")
    env.clock.advance(86400 + 1)
    env.wait_status("r1", "escalated", "review")

    assert_refused(trust, "r1", trust.drop(trust.signed("r1", "dave", resolve="retry")),
                   "'dave' is not a resolver of 'review' (resolvers: carol)")
    assert_refused(trust, "r1", trust.drop(trust.signed("r1", "carol", resolve="skip", trigger="approve")),
                   "needs 2 distinct approvers")  # one resolver cannot stand in for a quorum
    assert_refused(trust, "r1", trust.drop(trust.signed("r1", "bob", cancel=True)),
                   "'bob' is not an operator of machine 'four_eyes' and may not cancel it")
    v2 = machine_dir / "four_eyes_v2.yaml"
    v2.write_text(FOUR_EYES.replace("version: 1", "version: 2"))
    from engine.definition.loader import load_machine
    new = load_machine(v2, machine_dir)
    upgrade = {"definition": new.definition, "definition_hash": new.hash, "source": str(v2)}
    assert_refused(trust, "r1", trust.drop(trust.signed("r1", "bob", upgrade=upgrade)),
                   "'bob' is not an operator", "may not upgrade it")
    assert env.row("r1").status == "escalated" and env.row("r1").version == 1

    assert trust.outcome(trust.drop(trust.signed("r1", "carol", resolve="retry"))) == ("done", "")
    env.wait_status("r1", "waiting", "review")
    assert trust.outcome(trust.drop(trust.signed("r1", "ops", cancel=True, reason="customer left"))) == ("done", "")
    env.wait_status("r1", "cancelled")
    cancelled = next(r for r in env.records("r1") if r["type"] == "cancelled")
    assert (cancelled["by"], cancelled["verified"], cancelled["via"]) == ("ops", True, "signature")
    assert ran(env, "charge") == []


def test_skip_approve_by_a_non_approver_is_refused_the_walk_around_of_issue_11(env):
    """`ratchet resolve r1 skip approve --by mallory` on a run escalated after its approval
    wait timed out: refused, and the step behind the approval never runs."""
    trust = Trust(env)
    env.start("r1")
    env.supervise()
    env.wait_status("r1", "waiting", "review")
    env.clock.advance(86400 + 1)
    env.wait_status("r1", "escalated", "review")

    out = env.cli("resolve", "r1", "skip", "approve", "--by", "mallory", "--key", str(env.dir / "mallory.key"))
    assert out.returncode == 0, out.stderr
    name = os.path.basename(out.stdout.decode().strip())
    assert_refused(trust, "r1", name, "'mallory' may not skip to 'approve'", "not an approver of 'review'")
    assert env.row("r1").status == "escalated" and ran(env, "send") == []

    out = env.cli("resolve", "r1", "skip", "approve", "--by", "alice", "--key", str(env.dir / "alice.key"))
    assert trust.outcome(os.path.basename(out.stdout.decode().strip())) == ("done", "")
    env.wait_status("r1", "finished", "done")
    resolved = next(r for r in env.records("r1") if r["type"] == "resolved")
    assert (resolved["by"], resolved["verified"], resolved["via"]) == ("alice", True, "signature")
    assert len(ran(env, "send")) == 1


# --- crashes and open homes ------------------------------------------------------------------


@pytest.mark.slow
def test_a_kill_9_between_two_approvals_keeps_the_first(env, four_eyes):
    trust = Trust(env)
    start_four_eyes(env, four_eyes, "r1")
    first = env.supervise()
    env.wait_status("r1", "waiting", "review")
    assert trust.outcome(trust.drop(trust.signed("r1", "bob", trigger="approve"))) == ("done", "")
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    assert "approve 1 of 2 (bob)" in env.cli("status").stdout.decode()  # replayed from the journal alone
    env.supervise()
    again = trust.signed("r1", "bob", trigger="approve", comment="again")  # a new signature (Ed25519 is deterministic)
    assert_refused(trust, "r1", trust.drop(again), "already approved")
    assert trust.outcome(trust.drop(trust.signed("r1", "carol", trigger="approve"))) == ("done", "")
    env.wait_status("r1", "finished", "done")
    assert len(ran(env, "charge")) == 1


def test_an_open_home_takes_senders_at_their_word_and_says_so(env):
    env.start("r1")
    env.supervise()
    env.wait_status("r1", "waiting", "review")
    env.send("r1", "approve", by="alice")
    env.wait_status("r1", "finished", "done")
    received = next(r for r in env.records("r1") if r["type"] == "trigger_received")
    assert received["verified"] is False and "via" not in received
    status = env.cli("status")
    assert b"open home (no people.yaml): senders are not verified" in status.stderr


def test_a_broken_people_file_refuses_every_file_until_it_is_fixed(env):
    trust = Trust(env)
    env.start("r1")
    env.supervise()
    env.wait_status("r1", "waiting", "review")
    people = env.home.root / "people.yaml"
    good = people.read_text()
    people.write_text(good + "Bad Name!: {unix_user: x}\n")
    assert_refused(trust, "r1", trust.drop(trust.signed("r1", "alice", trigger="approve")),
                   "people.yaml cannot be used", "people.yaml:7")
    assert b"people.yaml:7" in env.cli("status").stderr
    people.write_text(good)
    assert trust.outcome(trust.drop(trust.signed("r1", "alice", trigger="approve"))) == ("done", "")


# --- the engine's own cancels ------------------------------------------------------------------

ANY_PARENT = """
name: any_parent
version: 1
initial: fan
states:
  fan:
    spawn: {machine: guarded_child, for_each: items, join: any}
    timeout: 1d
  done: {final: true}
  failed_join: {final: true, outcome: failed}
transitions:
  - {trigger: joined, source: fan, dest: done}
  - {trigger: failed, source: fan, dest: failed_join}
"""
GUARDED_CHILD = """
name: guarded_child
version: 1
initial: review
operators: [ops]
states:
  review: {approvers: [bob], timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""


def test_with_people_the_engine_still_cancels_a_child_its_parent_no_longer_wants(env, machine_dir, unix_users):
    """A join `any` met, the other child is unwanted: the supervisor's own cancel (by 'ratchet',
    written as the supervisor's Unix user) is proven and allowed though 'ratchet' is neither in
    people.yaml nor among the child's operators; the same cancel written by anyone else is refused."""
    (machine_dir / "any_parent.yaml").write_text(ANY_PARENT)
    (machine_dir / "guarded_child.yaml").write_text(GUARDED_CHILD)
    trust = Trust(env)
    open_inbox_to_everyone(env)
    Runner(env.home, clock=env.clock, machines_dir=env.dir).start(machine_dir / "any_parent.yaml",
                                                                   {"items": [1, 2, 3]}, run_id="p", by="alice")
    env.supervise()
    for child in ("p.fan.0", "p.fan.1", "p.fan.2"):
        env.wait_status(child, "waiting", "review")
    forged = {"run": "p.fan.2", "cancel": True, "by": "ratchet", "reason": "mallory posing as the engine"}
    assert_refused(trust, "p.fan.2", trust.drop(forged, as_user=unix_users["mallory"]), "not verified")
    assert trust.outcome(trust.drop(trust.signed("p.fan.0", "bob", trigger="approve"))) == ("done", "")
    env.wait_status("p", "finished", "done")
    for child in ("p.fan.1", "p.fan.2"):
        env.wait_status(child, "cancelled")
        cancelled = next(r for r in env.records(child) if r["type"] == "cancelled")
        assert (cancelled["by"], cancelled["verified"], cancelled["via"]) == ("ratchet", True, "engine")


def test_a_quorum_is_met_on_the_mail_lane_while_the_only_worker_is_busy(env, four_eyes):
    """Both signed approvals are proven, counted and journaled by the lane (no worker free),
    each vote sealed as the run rests; the step behind the quorum waits for the pool."""
    trust = Trust(env)
    start_four_eyes(env, four_eyes, "r1", by="alice")
    sup = env.supervise("--workers", "1")
    env.wait_status("r1", "waiting", "review")
    gate = env.dir / "gate"
    env.start("busy", gate=str(gate))
    wait_for(env.started_marker("busy").exists, what="the only worker to be busy")

    bob = trust.signed("r1", "bob", trigger="approve")
    assert trust.outcome(trust.drop(bob)) == ("done", "")
    assert_refused(trust, "r1", trust.drop(bob), "replayed")
    assert trust.outcome(trust.drop(trust.signed("r1", "carol", trigger="approve"))) == ("done", "")
    wait_for(lambda: any(r["type"] == "transition" and r["dest"] == "charge" for r in env.records("r1")),
             what="the quorum's transition, journaled by the lane")
    assert not gate.exists() and ran(env, "charge") == []  # the worker still holds 'busy': nothing ran
    kinds = [r["type"] for r in env.all_records("r1")]
    voted, refused = kinds.index("trigger_voted"), kinds.index("trigger_refused")
    assert kinds[voted + 1] == "sealed" and kinds[refused + 1] == "sealed"  # at rest after each: sealed
    decided = [(r["type"], r["by"], r.get("via")) for r in env.records("r1") if r["type"].startswith("trigger_")]
    assert decided == [("trigger_voted", "bob", "signature"), ("trigger_refused", "bob", "signature"),
                       ("trigger_received", "carol", "signature")]

    gate.touch()
    env.wait_status("r1", "finished", "done")
    assert len(ran(env, "charge")) == 1
    assert env.all_records("r1")[-1]["type"] == "sealed"
    assert env.cli("verify", "r1").returncode == 0
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(15) == 0
