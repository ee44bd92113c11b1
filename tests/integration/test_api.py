"""The Python API (`from engine import Ratchet`) against a live `ratchet supervise` subprocess.

Every call is used as an application would: `start` only journals (the supervisor, a
separate process, runs the steps), `wait` sleeps on the store's change hints until the
supervisor's answer is journaled, and the messages are the CLI's own files, byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import engine
from engine.api import waiting
from engine.cli import main
from engine.errors import InvalidMessageError, UnknownRunError, WaitTimeoutError
from journal import Cancelled, Resolved, RunStarted, Sealed, TriggerReceived, TriggerRefused

from supervisor_harness import Env
from waiting import wait_for


@pytest.fixture
def ratchet(env: Env) -> engine.Ratchet:
    return engine.Ratchet(home=env.home.root, machines_dir=env.machine.parent, clock=env.clock)


HINTED = 20.0  # seconds: far longer than a hinted wait takes (well under 1 s here); a wait's timeout is 2x that


@pytest.fixture
def hints_only(monkeypatch):
    """No fallback look for an hour: a wait that returns before its timeout was woken by the
    store's watch (a waiter deaf to hints would return only at its timeout, at its last look)."""
    monkeypatch.setattr(waiting, "RECHECK", 3600.0)


def timed_wait(ratchet, run_id, **kwargs):
    start = time.monotonic()
    run = ratchet.wait(run_id, timeout=2 * HINTED, **kwargs)
    assert time.monotonic() - start < HINTED, "the wait was not woken by the journal's change hints"
    return run


def test_start_runs_nothing_in_the_caller_and_the_supervisor_drives_the_run(env, ratchet, hints_only):
    run_id = ratchet.start(env.machine, {"customer": "acme"}, id="api-1", by="crm")
    assert run_id == "api-1"
    assert [type(r) for r in ratchet.history(run_id)] == [RunStarted]  # no step here: not even started
    assert env.ledger_lines() == []
    before = ratchet.get(run_id)
    assert (before.status, before.state, before.input, before.seq) == ("running", "prepare", {"customer": "acme"}, 1)
    assert before.stalled  # nobody drives it yet
    assert ratchet.start(env.machine, {"customer": "other"}, id="api-1") == "api-1"  # idempotent on id

    env.supervise()
    run = timed_wait(ratchet, run_id)  # woken by the journal's hints (RECHECK is an hour)
    assert (run.status, run.state, run.waiting_on, run.approvers) == ("waiting", "review", ("approve", "reject"),
                                                                       ("alice",))
    assert run.deadline is not None and run.deadline.isoformat() == "2026-01-06T09:00:00+00:00"  # 1d on the clock
    assert run.data == {"prepare": 1} and not run.ended and run.escalation is None
    assert {line["pid"] for line in env.ledger_lines()} != {os.getpid()}  # a worker ran the step

    sent = ratchet.approve(run_id, by="alice", comment="fine", data={"seats": 40})
    assert sent.path.parent == env.home.inbox and sent.run_id == run_id and sent.seq == run.seq
    done = timed_wait(ratchet, run_id, after=sent)
    assert (done.status, done.state, done.ended) == ("finished", "done", True)
    assert done.data == {"prepare": 1, "seats": 40, "send": 1}
    received = [r for r in ratchet.history(run_id) if isinstance(r, TriggerReceived)]
    assert [(r.trigger, r.by, r.comment) for r in received] == [("approve", "alice", "fine")]
    assert received[0].source_file.endswith(sent.path.name)
    wait_for((env.home.inbox_done / sent.path.name).exists, what="the approval filed in done/")  # after its record
    assert [r.seq for r in ratchet.history(run_id)] == list(range(1, done.seq + 1))


def test_list_filters_reject_and_a_refused_sender(env, ratchet):
    for run_id in ("l-1", "l-2", "l-3"):
        ratchet.start(env.machine, id=run_id)
    env.supervise()
    for run_id in ("l-1", "l-2", "l-3"):
        ratchet.wait(run_id, until="waiting", timeout=30)
    assert [r.id for r in ratchet.list(status="waiting")] == ["l-1", "l-2", "l-3"]
    assert [r.id for r in ratchet.list(machine="approval", state="review")] == ["l-1", "l-2", "l-3"]
    assert ratchet.list(machine="invoice") == [] and ratchet.list(status="finished") == []

    refused = ratchet.approve("l-1", by="mallory")  # not an approver: refused and journaled, nothing applied
    run = ratchet.wait("l-1", after=refused, timeout=30)
    assert (run.status, run.state) == ("waiting", "review")
    last = [r for r in ratchet.history("l-1") if not isinstance(r, Sealed)][-1]
    assert isinstance(last, TriggerRefused) and last.by == "mallory" and "not an approver" in last.reason
    wait_for((env.home.inbox_rejected / refused.path.name).exists, what="the refusal filed in inbox/rejected/")

    sent = ratchet.reject("l-2", by="alice", comment="too expensive")
    run = ratchet.wait("l-2", after=sent, until="ended", timeout=30)
    assert (run.status, run.state, run.outcome) == ("finished", "rejected", "rejected")
    sent = ratchet.send("l-3", "approve", by="alice", data={"note": "ok"})
    assert ratchet.wait("l-3", after=sent, until=["finished"], timeout=30).data["note"] == "ok"
    assert [r.id for r in ratchet.list(status="finished")] == ["l-2", "l-3"]
    assert [r.id for r in ratchet.list(status="waiting")] == ["l-1"]


def test_an_escalation_is_seen_and_resolved(env, ratchet):
    ratchet.start(env.machine, id="esc-1")
    env.supervise()
    ratchet.wait("esc-1", until="waiting", timeout=30)
    env.clock.advance(2 * 86400)  # the 1d wait expires; no `timeout` transition: it escalates
    run = ratchet.wait("esc-1", until="escalated", timeout=30)
    assert run.escalation is not None and run.escalation.reason == "timeout"
    assert [r.id for r in ratchet.list(status="escalated")] == ["esc-1"]
    sent = ratchet.resolve("esc-1", "skip", "approve", by="alice", comment="approved by phone")
    run = ratchet.wait("esc-1", after=sent, until="ended", timeout=30)
    assert (run.status, run.state) == ("finished", "done")
    resolved = [r for r in ratchet.history("esc-1") if isinstance(r, Resolved)]
    assert [(r.action, r.trigger, r.by) for r in resolved] == [("skip", "approve", "alice")]


def test_cancel_and_resolve_abort(env, ratchet):
    ratchet.start(env.machine, id="c-1")
    ratchet.start(env.machine, id="c-2")
    env.supervise()
    ratchet.wait("c-1", until="waiting", timeout=30)
    sent = ratchet.cancel("c-1", by="ops", reason="customer left")
    run = ratchet.wait("c-1", after=sent, timeout=30)
    assert (run.status, run.state) == ("cancelled", "review")
    last = [r for r in ratchet.history("c-1") if not isinstance(r, Sealed)][-1]
    assert isinstance(last, Cancelled) and (last.by, last.reason) == ("ops", "customer left")
    with pytest.raises(InvalidMessageError, match="run 'c-1' is cancelled .* takes no more messages"):
        ratchet.approve("c-1", by="alice")

    ratchet.wait("c-2", until="waiting", timeout=30)
    env.clock.advance(2 * 86400)
    ratchet.wait("c-2", until="escalated", timeout=30)
    sent = ratchet.resolve("c-2", "abort", by="alice", comment="gone")
    assert ratchet.wait("c-2", after=sent, timeout=30).status == "cancelled"


def test_wait_times_out_with_an_engine_error(env, ratchet):
    ratchet.start(env.machine, id="t-1")  # no supervisor: it never moves
    with pytest.raises(WaitTimeoutError, match="run 't-1': still running in 'prepare' after 0.3s") as caught:
        ratchet.wait("t-1", until="finished", timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.status, caught.value.state) == ("running", "prepare")
    with pytest.raises(ValueError, match="until='done'"):
        ratchet.wait("t-1", until="done")


def test_errors_are_the_engines_and_write_nothing(env, ratchet):
    ratchet.start(env.machine, id="e-1")
    with pytest.raises(UnknownRunError, match="no run 'nope'"):
        ratchet.get("nope")
    with pytest.raises(UnknownRunError):
        ratchet.history("nope")
    with pytest.raises(UnknownRunError):
        ratchet.approve("nope", by="alice")
    with pytest.raises(InvalidMessageError, match="has no trigger 'ship'; its triggers: ok, approve, reject"):
        ratchet.send("e-1", "ship", by="alice")
    with pytest.raises(InvalidMessageError, match="by 'a b': use letters"):
        ratchet.approve("e-1", by="a b")
    with pytest.raises(InvalidMessageError, match="'trigger' is required for resolve: skip"):
        ratchet.resolve("e-1", "skip", by="ops")
    assert [p for p in env.home.inbox.iterdir() if p.is_file()] == []


def _cli(env: Env, *args: str) -> Path:
    result = CliRunner().invoke(main, ["--home", str(env.home.root), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


@pytest.mark.parametrize("cli_args, call", [
    (["approve", "b-1", "--by", "alice", "--comment", "fine", "--data", "seats=40", "--data", "note=x"],
     lambda r: r.approve("b-1", by="alice", comment="fine", data={"seats": 40, "note": "x"})),
    (["reject", "b-1", "--by", "bob"], lambda r: r.reject("b-1", by="bob")),
    (["send", "b-1", "approve", "--by", "alice", "--data", "n=3"],
     lambda r: r.send("b-1", "approve", by="alice", data={"n": 3})),
    (["resolve", "b-1", "skip", "approve", "--by", "ops", "--comment", "c"],
     lambda r: r.resolve("b-1", "skip", "approve", by="ops", comment="c")),
    (["resolve", "b-1", "retry", "--by", "ops"], lambda r: r.resolve("b-1", "retry", by="ops")),
    (["cancel", "b-1", "--by", "ops", "--reason", "left"], lambda r: r.cancel("b-1", by="ops", reason="left")),
], ids=["approve", "reject", "send", "resolve-skip", "resolve-retry", "cancel"])
def test_the_api_writes_the_clis_messages_byte_for_byte(env, ratchet, cli_args, call):
    ratchet.start(env.machine, id="b-1")
    by_hand = _cli(env, *cli_args)
    by_api = call(ratchet).path
    assert by_api.read_bytes() == by_hand.read_bytes()
    # the same kind of name: time stamp, run, what, random suffix
    assert by_api.name.split("-")[1:-1] == by_hand.name.split("-")[1:-1]


def test_import_engine_does_not_load_the_api():
    code = ("import sys, engine; assert 'engine.api' not in sys.modules; "
            "engine.Ratchet; print('engine.api' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def test_a_message_signed_through_the_api_is_journaled_as_verified(env, ratchet, tmp_path):
    from journal.keys import new_private_key, public_pem

    key = new_private_key(tmp_path / "alice.key")
    (env.home.root / "keys").mkdir(exist_ok=True)
    (env.home.root / "keys" / "alice.pub").write_bytes(public_pem(key))
    (env.home.root / "people.yaml").write_text("alice: {public_key: keys/alice.pub}\n")
    ratchet.start(env.machine, id="s-1")
    env.supervise()
    ratchet.wait("s-1", until="waiting", timeout=30)
    with pytest.raises(InvalidMessageError, match="not bob's key"):  # a key people.yaml does not give bob
        ratchet.approve("s-1", by="bob", key=key)
    sent = ratchet.approve("s-1", by="alice", key=key)
    ratchet.wait("s-1", after=sent, until="ended", timeout=30)
    received = [r for r in ratchet.history("s-1") if isinstance(r, TriggerReceived)]
    assert [(r.by, r.verified, r.via) for r in received] == [("alice", True, "signature")]


def test_start_without_by_names_the_same_starter_as_the_cli_so_not_starter_holds(env, ratchet, machine_dir):
    """A run the API starts for the person people.yaml gives this Unix user is theirs, as with
    `ratchet start`: a not_starter wait refuses their approval (no starter: anyone's passes)."""
    import pwd

    from people_harness import FOUR_EYES

    login = pwd.getpwuid(os.geteuid()).pw_name
    (env.home.root / "people.yaml").write_text(f"alice: {{unix_user: {login}}}\nbob: {{unix_user: nobody}}\n")
    (machine_dir / "four_eyes.yaml").write_text(FOUR_EYES)
    ratchet.start(machine_dir / "four_eyes.yaml", id="api-4e")
    assert env.cli("start", str(machine_dir / "four_eyes.yaml"), "--id", "cli-4e").returncode == 0
    starters = [ratchet.history(run_id)[0].by for run_id in ("api-4e", "cli-4e")]
    assert starters == ["alice", "alice"]
    env.supervise()
    ratchet.wait("api-4e", until="waiting", timeout=30)
    sent = ratchet.approve("api-4e", by="alice")  # written by this Unix user: proven to be alice
    run = ratchet.wait("api-4e", after=sent, timeout=30)
    assert run.state == "review"
    refused = [r for r in ratchet.history("api-4e") if isinstance(r, TriggerRefused)]
    assert [(r.by, r.verified) for r in refused] == [("alice", True)] and "not_starter" in refused[0].reason
