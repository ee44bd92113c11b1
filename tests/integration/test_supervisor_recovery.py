"""`ratchet supervise` recovering from what others left: stops, restarts, crashes, bad files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest

from engine.supervise import inbox
from journal import StepStarted

from damage import lines_of, write_lines
from journal_builders import run_started
from supervisor_harness import Env, pid_alive
from waiting import wait_for


def types(env: Env, run_id: str) -> Counter:
    return Counter(r["type"] for r in env.records(run_id))


def test_a_stop_during_a_delivered_step_never_applies_the_file_twice(env):
    gate = env.dir / "gate"
    env.start("r1", gate=str(gate), gate_in="send")
    assert env.once().returncode == 0
    dropped = env.send("r1", "approve")
    sup = env.supervise("--grace", "0.2")
    wait_for(env.started_marker("r1").exists, what="the delivered trigger's step to start")
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(15) == 0
    assert inbox.pending(env.home) == []
    # Journaled on the mail lane and filed before its step was dispatched (engine.supervise.lane).
    assert env.claimed_files() == [] and os.listdir(env.home.inbox_done) == [dropped.name]
    gate.touch()
    result = env.once()
    assert result.returncode == 0, result.stderr
    assert env.row("r1").status == "finished"
    counts = types(env, "r1")
    assert (counts["trigger_received"], counts["trigger_refused"]) == (1, 0)
    assert os.listdir(env.home.inbox_done) == [dropped.name]
    assert os.listdir(env.home.inbox_rejected) == [] and env.claimed_files() == []


def test_after_a_restart_a_stalled_step_is_replayed_not_failed_as_timed_out(env):
    runs = [f"r{i:02d}" for i in range(12)]
    machine = env.machine.with_name("slow_start.yaml")  # a fresh worker is slow to write its first record
    cmd = [sys.executable, "-c", "from engine.cli import main; main()", "run", str(machine), "--id"]
    crash = {**env.env, "RATCHET_CRASH_AT": "before_action:1"}
    procs = [subprocess.Popen([*cmd, run], cwd=env.dir, env=crash, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for run in runs]
    assert [p.wait(60) for p in procs] == [-signal.SIGKILL] * len(runs)
    assert all(env.row(run).in_flight for run in runs)
    env.clock.advance(3600)  # the dead steps' step_started are far older than their 2s timeout
    result = env.once("--workers", "4", timeout=30)
    assert result.returncode == 0, result.stderr
    for run in runs:
        counts = types(env, run)
        assert (counts["step_failed"], counts["step_abandoned"], counts["step_started"]) == (0, 1, 2), run
        assert env.row(run).state == "review", run
    calls = Counter((e["run"], e["attempt"]) for e in env.ledger_lines())
    assert calls == {(run, 1): 1 for run in runs}


def test_a_crash_between_escalated_and_its_ticket_is_repaired_once(env):
    env.start("r1", machine="notifying")
    assert env.once().returncode == 0
    env.clock.advance(3601)  # the wait expired: the next advance escalates
    crashed = env.cli("run", str(env.machine.with_name("notifying.yaml")), "--id", "r1",
                      RATCHET_CRASH_AT="after_append:1")
    assert crashed.returncode == -signal.SIGKILL
    assert env.row("r1").status == "escalated"
    assert env.ticket("r1") is None and env.notified() == []
    assert env.once().returncode == 0
    ticket = env.ticket("r1")
    assert ticket is not None and ticket["notified"] is True
    assert [n["key"] for n in env.notified()] == ["r1/escalation/1"]
    assert env.once().returncode == 0
    assert len(env.notified()) == 1


def test_a_hung_on_escalate_is_killed_and_the_run_is_released(env):
    env.start("r1", machine="notifying", hang_notify=True)
    env.supervise()
    env.wait_status("r1", "waiting", "review")
    env.clock.advance(3601)
    marker = env.started_marker("r1")
    wait_for(marker.exists, what="on_escalate to hang")
    hung = int(marker.read_text())
    assert env.ticket("r1")["notified"] is False
    env.clock.advance(301)  # past the default job timeout (5 min), with no step in flight
    wait_for(lambda: not pid_alive(hung), what="the hung worker to be killed")
    wait_for(lambda: (env.ticket("r1") or {}).get("notified"), what="on_escalate to be called again")
    env.send("r1", None, by="alice", resolve="abort")
    env.wait_status("r1", "cancelled")


def damage(env: Env, run_id: str) -> None:
    """Replace a middle line of the journal: the hash chain breaks there."""
    path = env.home.store.path(run_id)
    lines = lines_of(path)
    lines[1] = b'{"type":"transition","seq":2}'
    write_lines(path, lines)


def test_a_file_for_a_damaged_run_is_rejected_and_once_exits(env):
    env.start("r1")
    env.start("r2")
    assert env.once().returncode == 0
    damage(env, "r1")
    bad, good = env.send("r1", "approve"), env.send("r2", "approve")
    result = env.once(timeout=30)
    assert result.returncode == 0, result.stderr
    note = (env.home.inbox_rejected / f"{bad.name}.error.txt").read_text()
    assert note.startswith("run's journal is damaged: ") and "r1.jsonl" in note
    assert (env.home.inbox_done / good.name).exists() and env.row("r2").status == "finished"
    assert env.claimed_files() == []
    assert "1 damaged" in result.stderr.decode()


def test_a_journal_that_cannot_be_folded_is_shown_damaged_and_the_rest_goes_on(env):
    with env.home.store.writer("bad", create=True) as w:
        w.append_many([
            run_started("bad", definition={"initial": "a", "states": {"a": {}}}, definition_hash="sha256:x",
                        ts="2026-01-05T09:00:00Z"),
            StepStarted(state="nowhere", attempt=1, idempotency_key="bad/nowhere/1", ts="2026-01-05T09:00:00Z"),
        ])
    env.start("r1")
    result = env.once()
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr and b"bad.jsonl" in result.stderr
    assert env.row("r1").status == "waiting"
    listing = env.cli("status")
    assert listing.returncode == 0, listing.stderr
    assert b"damaged" in listing.stdout and b"Traceback" not in listing.stderr


@pytest.mark.parametrize("folder", ["done", "rejected", ".claimed"])
def test_a_symlinked_inbox_folder_is_refused_at_start(env, tmp_path, folder):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = env.home.inbox / folder
    os.rmdir(target)
    os.symlink(outside, target)
    env.start("r1")
    (env.home.inbox / "x.json").write_text('{"run": "r1", "trigger": "nope", "by": "alice"}')
    result = env.once()
    assert result.returncode != 0
    first, *err = result.stderr.decode().strip().splitlines()
    assert first.endswith(f"ratchet supervise: home {env.home.root}"), first  # the only log line before it
    assert len(err) == 1 and "symlink" in err[0] and folder in err[0], err
    assert os.listdir(outside) == [] and (env.home.inbox / "x.json").exists()
