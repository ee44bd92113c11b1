"""A quorum counts distinct approvers within one wait; a trigger without one fires at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.run.clock import FakeClock
from engine.run.replay import fold
from engine.supervise.message import Message

MACHINE = """
name: vote
version: 1
initial: review
states:
  review:
    approvers: [alice, bob, carol]
    quorum: {approve: 2}
    not_starter: true
    timeout: 1h
  done: {final: true}
  rejected: {final: true, outcome: rejected}
transitions:
  - {trigger: approve, source: review, dest: done}
  - {trigger: reject, source: review, dest: rejected}
  - {trigger: timeout, source: review, dest: review}
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock("2026-11-30T09:00:00Z")


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    path = tmp_path / "vote.yaml"
    path.write_text(MACHINE)
    return path


def approve(rid: str, by: str, trigger: str = "approve") -> Message:
    return Message(run=rid, trigger=trigger, by=by)


def test_a_single_reject_fires_at_once_while_approvals_are_counted(runner, machine):
    rid = runner.start(machine, {}, run_id="r1", by="alice")
    assert runner.advance(rid).status == "waiting"
    d = runner.deliver(rid, approve(rid, "bob"))
    assert d.accepted and d.state.status == "waiting" and d.state.votes == {"approve": ["bob"]}
    d = runner.deliver(rid, approve(rid, "carol", "reject"))
    assert d.accepted and (d.state.status, d.state.outcome) == ("finished", "rejected")


def test_votes_belong_to_one_wait_and_replay_rebuilds_them(runner, machine, clock):
    rid = runner.start(machine, {}, run_id="r1", by="dave")
    runner.advance(rid)
    runner.deliver(rid, approve(rid, "bob"))
    assert fold(runner.home.store.read(rid).records).votes == {"approve": ["bob"]}  # from the journal alone
    clock.advance(3601)  # the wait times out and is opened again (timeout -> review)
    rs = runner.advance(rid)
    assert rs.status == "waiting" and rs.votes == {}
    d = runner.deliver(rid, approve(rid, "carol"))
    assert d.state.status == "waiting" and d.state.votes == {"approve": ["carol"]}  # bob's vote was for the old wait
    d = runner.deliver(rid, approve(rid, "bob"))
    assert d.state.status == "finished" and d.state.state == "done"


def test_every_trust_refusal_has_its_own_metrics_reason(runner, machine, tmp_path, clock):
    """`ratchet_inbox_files_total{result="refused", reason=...}`: an operator alerting on forged or
    replayed files needs them named, not counted as "other" (engine.supervise.metrics)."""
    from datetime import timedelta

    from engine.run.clock import iso
    from engine.supervise.metrics import _refusal_kind
    from engine.trust.people import load_people
    from engine.trust.sender import SIGNATURE, FileFacts, Sender, prove

    rid = runner.start(machine, {}, run_id="r1", by="alice")
    runner.advance(rid)
    (tmp_path / "people.yaml").write_text("alice: {unix_user: nobody}\n")
    stranger = prove(load_people(tmp_path), {"run": rid, "trigger": "approve", "by": "mallory"}, FileFacts(0, 1, 0o644))
    stands_at = runner.read(rid).stands_at
    signed = Sender("bob", True, SIGNATURE, signature="c2ln", answers=stands_at,
                    expires=iso(clock.now() + timedelta(hours=1)))
    assert runner.deliver(rid, approve(rid, "bob"), sender=signed).accepted
    reasons = {
        "not verified": runner.deliver(rid, approve(rid, "mallory"), sender=stranger).reason,
        "replayed": runner.deliver(rid, approve(rid, "bob"), sender=signed).reason,
        "same approver twice": runner.deliver(rid, approve(rid, "bob")).reason,
        "starter": runner.deliver(rid, approve(rid, "alice")).reason,
    }
    assert {kind: _refusal_kind("refused by the run", reason) for kind, reason in reasons.items()} == {
        kind: kind for kind in reasons}, reasons
