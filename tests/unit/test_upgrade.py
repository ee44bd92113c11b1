"""Upgrade: a live run moves to a new version of its machine, or is refused with every reason.

The runner's side, on a fake clock: accepted (waiting, retrying, escalated), the run
goes on under the new definition, replay after a restart equals the live state; refused
(each rule, and all reasons of one attempt at once), nothing journaled but the refusal.
`ratchet upgrade` and the supervisor are tests/integration/test_cli_cancel_upgrade.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from engine.definition.loader import Machine, load_file
from engine.errors import InvalidMessageError
from engine.run.clock import FakeClock
from engine.run.replay import fold
from engine.run.runner import Runner
from engine.run.upgrade import incompatibilities
from engine.supervise.message import Message, parse_message
from engine.supervise.status import status_rows
from journal import TriggerRefused, Upgraded, verify
from journal.records import record_type

import runner_test_actions as acts
from damage import lines_of, write_lines
from journal_builders import story

V1 = """
name: review_flow
version: 1
initial: draft
states:
  draft:
    action: runner_test_actions:step
    retry: {attempts: 3, backoff: 10s, factor: 1, jitter: false}
  review: {approvers: [alice], timeout: 2d}
  send: {action: runner_test_actions:step}
  done: {final: true}
  closed: {final: true, outcome: rejected}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: approve, source: review, dest: send}
  - {trigger: reject, source: review, dest: closed}
  - {trigger: ok, source: send, dest: done}
"""

# v2: carol may approve too, the review lasts 3 days, and an approval goes to a new
# `check` step before `send`.
V2 = (V1.replace("version: 1", "version: 2")
      .replace("review: {approvers: [alice], timeout: 2d}", "review: {approvers: [alice, carol], timeout: 3d}\n"
               "  check: {action: runner_test_actions:step}")
      .replace("{trigger: approve, source: review, dest: send}",
               "{trigger: approve, source: review, dest: check}\n  - {trigger: ok, source: check, dest: send}"))


@pytest.fixture
def clock():
    return FakeClock("2026-11-27T09:00:00Z")


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def version(tmp_path: Path, text: str, name: str = "v2") -> Machine:
    return load_file(write(tmp_path, text, name))


def upgrade_to(machine: Machine, run_id: str = "r1", by: str = "ops", **changes) -> Message:
    payload = {"definition": machine.definition, "definition_hash": machine.hash,
               "source": str(machine.source.resolve()), **changes}
    return Message(run=run_id, upgrade=payload, by=by, comment="carol covers for bob")


def types(runner: Runner, run_id: str = "r1") -> list[str]:
    return [record_type(r) for r in story(runner.home.store.read(run_id).records)]


def waiting_run(runner: Runner, tmp_path: Path) -> None:
    rs = runner.launch(write(tmp_path, V1, "v1"), {}, run_id="r1")
    assert (rs.status, rs.state, rs.version) == ("waiting", "review", 1)


# --- accepted -----------------------------------------------------------------------------


def test_a_waiting_run_moves_to_v2_and_goes_on_under_it(runner, tmp_path, clock, home):
    waiting_run(runner, tmp_path)
    v2 = version(tmp_path, V2)
    clock.advance(3600)
    d = runner.deliver("r1", upgrade_to(v2), source_file="u1.json")
    assert d.accepted, d.reason
    rs = d.state
    assert (rs.status, rs.version, rs.definition_hash) == ("waiting", 2, v2.hash)
    # The wait is opened again under v2: carol may approve, 3 days from when review was entered.
    assert rs.approvers == ["alice", "carol"] and rs.deadline.isoformat() == "2026-11-30T09:00:00+00:00"
    upgraded = story(runner.home.store.read("r1").records)[-2]
    assert isinstance(upgraded, Upgraded)
    assert (upgraded.by, upgraded.version, upgraded.from_hash, upgraded.source_file, upgraded.comment) == (
        "ops", 2, load_file(tmp_path / "v1.yaml").hash, "u1.json", "carol covers for bob")
    assert types(runner)[-3:] == ["waiting", "upgraded", "waiting"]
    assert status_rows(home, ["r1"])[0].version == 2

    d = runner.deliver("r1", Message(run="r1", trigger="approve", by="carol"), source_file="a1.json")
    assert d.accepted and (d.state.status, d.state.state) == ("finished", "done")
    assert [c[0] for c in acts.CALLS] == ["draft", "check", "send"]  # v2's new step ran
    assert verify(runner.home.store.path("r1"), run_id="r1").ok

    # Replay in a new process (no cache) follows v1, then v2 from the `upgraded` record on.
    restarted = Runner(home, clock=clock)
    assert asdict(restarted.read("r1")) == asdict(d.state)
    records = runner.home.store.read("r1").records
    for n in range(1, len(records) + 1):
        fold(records[:n])  # every prefix a crash could leave folds


def test_replay_after_a_restart_equals_the_live_state_at_every_step(runner, tmp_path, clock, home):
    waiting_run(runner, tmp_path)
    live = runner.deliver("r1", upgrade_to(version(tmp_path, V2)), source_file="u1.json").state
    restarted = Runner(home, clock=clock)
    assert asdict(restarted.read("r1")) == asdict(live)
    live = restarted.deliver("r1", Message(run="r1", trigger="approve", by="carol"), source_file="a1.json").state
    assert asdict(Runner(home, clock=clock).read("r1")) == asdict(live)


def test_a_run_sleeping_before_a_retry_moves_when_the_new_policy_allows_the_attempt(runner, tmp_path, clock):
    acts.SCRIPT["draft"] = [acts.Flaky("503")]
    rs = runner.launch(write(tmp_path, V1, "v1"), {}, run_id="r1")
    assert rs.status == "retrying" and rs.retry_attempt == 2
    v2 = version(tmp_path, V2.replace("attempts: 3", "attempts: 2"))
    d = runner.deliver("r1", upgrade_to(v2), source_file="u1.json")
    assert d.accepted and d.state.status == "retrying" and d.state.retry_attempt == 2
    clock.advance(10)
    assert runner.advance("r1").state == "review"
    assert runner.read("r1").approvers == ["alice", "carol"]  # entered under v2


def test_an_escalated_run_moves_to_a_fixed_definition_then_resolves_under_it(runner, tmp_path):
    acts.SCRIPT["draft"] = ["escalate_me"]  # a trigger v1 has no transition for
    rs = runner.launch(write(tmp_path, V1, "v1"), {}, run_id="r1")
    assert rs.status == "escalated" and rs.escalation.reason == "no transition"
    fixed = version(tmp_path, V2.replace("  - {trigger: ok, source: draft, dest: review}",
                                         "  - {trigger: ok, source: draft, dest: review}\n"
                                         "  - {trigger: escalate_me, source: draft, dest: review}"))
    d = runner.deliver("r1", upgrade_to(fixed), source_file="u1.json")
    assert d.accepted and d.state.status == "escalated"  # still waiting for a human
    d = runner.deliver("r1", Message(run="r1", resolve="skip", trigger="escalate_me", by="ops"), source_file="s1.json")
    assert d.accepted and (d.state.status, d.state.state) == ("waiting", "review")


# --- refused ------------------------------------------------------------------------------


def test_every_reason_is_given_at_once_and_only_a_refusal_is_journaled(runner, tmp_path, clock):
    waiting_run(runner, tmp_path)
    clock.advance(2 * 3600)
    text = (V1.replace("{trigger: reject, source: review, dest: closed}", "{trigger: decline, source: review, "
                       "dest: closed}").replace("timeout: 2d}", "timeout: 1h}"))
    bad = version(tmp_path, text, "same_version")
    reasons = incompatibilities(runner.read("r1"), bad, clock.now())
    assert len(reasons) == 3, reasons
    assert "follows version 1 already" in reasons[0]
    assert "waits in 'review' for reject, which the new definition no longer takes there" in reasons[1]
    assert "ran out at 2026-11-27T10:00:00.000000Z" in reasons[2]
    before = types(runner)
    d = runner.deliver("r1", upgrade_to(bad), source_file="u1.json")
    assert not d.accepted and d.reason == "; ".join(reasons)
    refused = story(runner.home.store.read("r1").records)[-1]
    assert isinstance(refused, TriggerRefused) and (refused.trigger, refused.source_file) == ("upgrade", "u1.json")
    assert types(runner) == [*before, "trigger_refused"]
    assert runner.read("r1").version == 1


@pytest.mark.parametrize("change, fragment", [
    (lambda t: t.replace("name: review_flow", "name: other_flow"),
     "machine 'other_flow', the run follows 'review_flow'"),
    (lambda t: t.replace("review:", "reviewing:").replace("source: review,", "source: reviewing,")
     .replace("dest: review}", "dest: reviewing}"), "state 'review', where the run is, is not in v2 (did you mean"),
    (lambda t: t.replace("review: {approvers: [alice, carol], timeout: 3d}",
                         "review: {action: runner_test_actions:step}"),
     "is a waiting state in v1 but a task state in v2"),
    (lambda t: t, None),
])
def test_each_rule_for_a_waiting_run(runner, tmp_path, change, fragment):
    waiting_run(runner, tmp_path)
    reasons = incompatibilities(runner.read("r1"), version(tmp_path, change(V2)), runner.clock.now())
    assert (fragment is None and reasons == []) or (len(reasons) == 1 and fragment in reasons[0]), reasons


def test_a_retry_the_new_policy_does_not_allow_is_refused(runner, tmp_path):
    acts.SCRIPT["draft"] = [acts.Flaky("503"), acts.Flaky("503")]
    rs = runner.launch(write(tmp_path, V1, "v1"), {}, run_id="r1")
    runner.clock.advance(10)
    rs = runner.advance("r1")
    assert rs.retry_attempt == 3
    reasons = incompatibilities(rs, version(tmp_path, V2.replace("attempts: 3", "attempts: 2")), runner.clock.now())
    assert reasons == ["the run sleeps before attempt 3 of 'draft', but v2 allows 2 attempts there; allow at least 3"]


def test_a_step_in_flight_and_an_ended_run_are_refused(runner, tmp_path, home, clock):
    acts.SCRIPT["draft"] = [acts.Die()]
    with pytest.raises(acts.Die):
        runner.launch(write(tmp_path, V1, "v1"), {}, run_id="r1")
    v2 = version(tmp_path, V2)
    rs = Runner(home, clock=clock).read("r1")
    assert incompatibilities(rs, v2, clock.now()) == [
        "a step is in flight ('draft' attempt 1, key r1/draft/1); upgrade between steps: when the run waits, "
        "sleeps before a retry or is escalated"]
    done = Runner(home, clock=clock)
    done.advance("r1")
    done.deliver("r1", Message(run="r1", trigger="reject", by="alice"))
    reasons = incompatibilities(done.read("r1"), v2, clock.now())
    assert reasons == ["the run has ended (finished in 'closed'); only a live run can move"]


def test_the_same_definition_again_is_refused(runner, tmp_path):
    waiting_run(runner, tmp_path)
    reasons = incompatibilities(runner.read("r1"), load_file(tmp_path / "v1.yaml"), runner.clock.now())
    assert len(reasons) == 1 and "follows this very definition already" in reasons[0]


def test_a_message_whose_definition_does_not_match_its_hash_or_does_not_load_is_refused(runner, tmp_path):
    waiting_run(runner, tmp_path)
    v2 = version(tmp_path, V2)
    d = runner.deliver("r1", upgrade_to(v2, definition_hash="sha256:" + "0" * 64), source_file="u1.json")
    assert not d.accepted and "write the message with 'ratchet upgrade'" in d.reason
    broken = dict(v2.definition, states={**v2.definition["states"], "check": {
        **v2.definition["states"]["check"], "action": "runner_test_actions:gone"}})
    d = runner.deliver("r1", upgrade_to(v2, definition=broken), source_file="u2.json")
    assert not d.accepted and "does not load" in d.reason and "has no 'gone'" in d.reason
    assert types(runner)[-2:] == ["trigger_refused", "trigger_refused"] and runner.read("r1").version == 1


# --- the record, the message, verify ------------------------------------------------------


def test_verify_checks_the_definition_an_upgrade_pins(runner, tmp_path):
    waiting_run(runner, tmp_path)
    runner.deliver("r1", upgrade_to(version(tmp_path, V2)), source_file="u1.json")
    path = runner.home.store.path("r1")
    lines = lines_of(path)
    n = next(i for i, line in enumerate(lines) if b'"type":"upgraded"' in line)
    lines[n] = lines[n].replace(b'"timeout":259200.0', b'"timeout":25920.0')
    write_lines(path, lines)
    result = verify(path, run_id="r1")
    assert not result.ok and result.line == n + 1 and "does not match definition_hash" in result.problem


@pytest.mark.parametrize("extra, fragment", [
    ({"trigger": "approve"}, "upgrade takes no 'trigger'"),
    ({"cancel": True}, "a cancel or an upgrade, not both"),
    ({"reason": "x"}, "'reason' goes with cancel only"),
    ({"data": {"a": 1}}, "upgrade takes no 'data'"),
])
def test_an_upgrade_message_is_validated(extra, fragment):
    upgrade = {"definition": {"name": "m"}, "definition_hash": "sha256:" + "a" * 64}
    with pytest.raises(InvalidMessageError, match=fragment):
        parse_message(json.dumps({"run": "r1", "by": "ops", "upgrade": upgrade, **extra}).encode(), ".json")
    with pytest.raises(InvalidMessageError, match="definition_hash"):
        parse_message(json.dumps({"run": "r1", "by": "ops", "upgrade": {**upgrade, "definition_hash": "md5:1"}})
                      .encode(), ".json")
