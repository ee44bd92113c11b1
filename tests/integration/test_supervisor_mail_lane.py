"""A person's answer never waits behind machine work (engine.supervise.lane), and a crash
between its journaled delivery and the filing of its file applies it exactly once."""

from __future__ import annotations

import os
import signal
from collections import Counter

from engine.supervise import inbox

from supervisor_harness import Env
from waiting import wait_for


def types(env: Env, run_id: str) -> Counter:
    return Counter(r["type"] for r in env.records(run_id))


def test_an_approval_is_journaled_while_every_worker_is_busy_and_more_runs_are_queued(env):
    env.start("waiter")
    sup = env.supervise("--workers", "2")
    env.wait_status("waiter", "waiting", "review")
    gate = env.dir / "gate"  # the test holds every step until it creates this file
    busy = [f"busy{i}" for i in range(4)]  # two hold both workers, two more are queued behind them
    for run in busy:
        env.start(run, gate=str(gate))
    wait_for(lambda: sum(env.started_marker(r).exists() for r in busy) == 2, what="both workers to be busy")

    dropped = env.send("waiter", "approve")
    wait_for(lambda: types(env, "waiter")["trigger_received"] == 1, timeout=10,
             what="the approval to be journaled while the workers are busy")
    assert not gate.exists()  # both workers still hold their step: the lane did it
    assert sum(env.started_marker(r).exists() for r in busy) == 2
    assert all(env.row(r).state == "prepare" for r in busy)
    wait_for(lambda: os.listdir(env.home.inbox_done) == [dropped.name], what="the file to be filed as applied")

    gate.touch()  # the steps that follow the approval go to the pool as usual
    env.wait_status("waiter", "finished", "done")
    for run in busy:
        env.wait_status(run, "waiting", "review")
    sends = [e for e in env.ledger_lines() if e["run"] == "waiter" and e["state"] == "send"]
    assert [e["effect"] for e in sends] == [True]
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(15) == 0


def test_a_refusal_and_a_reject_are_journaled_in_full_on_the_lane(env):
    """A reject leads to a final state: no code runs on the way, so the lane ends the run."""
    env.start("r1")
    env.start("r2")
    sup = env.supervise("--workers", "1")
    env.wait_status("r1", "waiting", "review")
    env.wait_status("r2", "waiting", "review")
    gate = env.dir / "gate"
    env.start("busy", gate=str(gate))
    wait_for(env.started_marker("busy").exists, what="the only worker to be busy")
    env.send("r1", "approve", by="mallory")
    env.send("r2", "reject")
    env.wait_status("r2", "finished", "rejected", timeout=10)
    wait_for(lambda: types(env, "r1")["trigger_refused"] == 1, timeout=10, what="the refusal")
    assert env.row("r1").status == "waiting" and not gate.exists()
    assert len(os.listdir(env.home.inbox_rejected)) == 2  # the file and its .error.txt
    gate.touch()
    env.wait_status("busy", "waiting", "review")
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(15) == 0


def test_a_supervisor_killed_between_the_journaled_delivery_and_its_filing_applies_it_once(env):
    env.start("r1")
    assert env.once().returncode == 0
    assert env.row("r1").status == "waiting"
    dropped = env.send("r1", "approve")
    crashing = Env.__new__(Env)
    crashing.__dict__.update(env.__dict__)
    crashing.env = {**env.env, "RATCHET_CRASH_AT": "lane_delivered:1"}  # SIGKILL after the lane's result
    sup = crashing.supervise()
    assert sup.wait(30) == -signal.SIGKILL
    counts = types(env, "r1")
    assert counts["trigger_received"] == 1  # journaled...
    assert len(env.claimed_files()) == 1 and os.listdir(env.home.inbox_done) == []  # ...not filed
    assert inbox.pending(env.home) == []

    result = env.once()  # adopts the claimed file, finds its key in the journal, files it
    assert result.returncode == 0, result.stderr
    assert env.row("r1").status == "finished"
    counts = types(env, "r1")
    assert (counts["trigger_received"], counts["trigger_refused"]) == (1, 0)
    assert os.listdir(env.home.inbox_done) == [dropped.name]
    assert os.listdir(env.home.inbox_rejected) == [] and env.claimed_files() == []
    sends = [e for e in env.ledger_lines() if e["state"] == "send"]
    assert [e["effect"] for e in sends] == [True]
