"""on_cancel under a real `ratchet supervise` and `ratchet run`, where it meets a second
cancel, heartbeats, a stop past the grace and Ctrl-C (found by a review).

- A cancel that arrives while an abort's on_cancel runs never cuts it off: the run has
  ended, nothing is left to cut, and on_cancel runs once.
- An on_cancel that heartbeats is alive: it is not killed at --job-timeout.
- A stop past the grace leaves on_cancel owed; the next start calls it again, same key.
- `ratchet run` stopped twice during an owed on_cancel says so and exits 130.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from engine.supervise.message import Message, write_message

from waiting import wait_for

# The action that releases a hold: it notes each call (and, when it heartbeats, each
# clock time it saw), then waits for a gate file the test opens.
RV_ACTS = '''
import json, os, time
from pathlib import Path

def _note(ctx):
    ledger = Path(os.environ["RATCHET_LEDGER"])
    with open(f"{ledger}.releases", "a") as f:
        f.write(json.dumps({"key": ctx.idempotency_key, "attempt": ctx.attempt, "pid": os.getpid()}) + "\\n")
    return Path(f"{ledger}.release_gate")

def slow_release(ctx):
    gate = _note(ctx)
    while not gate.exists():
        time.sleep(0.01)

def beating_release(ctx):
    gate = _note(ctx)
    seen = Path(os.environ["RATCHET_LEDGER"] + ".beats")
    clock = Path(os.environ["RATCHET_CLOCK_FILE"])
    while not gate.exists():
        ctx.heartbeat()
        seen.write_text(clock.read_text())  # the clock time this heartbeat was sent at (or later)
        time.sleep(0.01)
'''
ABORTABLE = """
name: abortable
version: 1
initial: prepare
on_cancel: rv_acts:slow_release
states:
  prepare: {action: sup_acts:work, non_retryable: [Fatal]}
  done: {final: true}
transitions:
  - {trigger: ok, source: prepare, dest: done}
"""
WAITS = """
name: waits_cancel
version: 1
initial: review
on_cancel: rv_acts:{release}
states:
  review: {{approvers: [alice], timeout: 1d}}
  done: {{final: true}}
transitions:
  - {{trigger: approve, source: review, dest: done}}
"""


def _setup(env, machine_dir: Path, name: str, text: str) -> None:
    (machine_dir / f"{name}.yaml").write_text(text)
    (machine_dir / "rv_acts.py").write_text(RV_ACTS)


def _releases(env) -> list[dict]:
    path = Path(f"{env.ledger}.releases")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _open_gate(env) -> None:
    Path(f"{env.ledger}.release_gate").touch()


def test_a_cancel_arriving_while_an_abort_runs_on_cancel_does_not_cut_it_off(env, machine_dir):
    _setup(env, machine_dir, "abortable", ABORTABLE)
    env.start("r1", "abortable", fatal_in="prepare")
    env.start("other", "approval")
    sup = env.supervise("--workers", "2")
    env.wait_status("r1", "escalated", "prepare")
    write_message(env.home, Message(run="r1", resolve="abort", by="ops"))
    wait_for(lambda: len(_releases(env)) == 1, what="on_cancel to be running (from the abort)")
    write_message(env.home, Message(run="r1", cancel=True, by="ops2", reason="also cancel"))
    wait_for(lambda: not list(env.home.inbox.glob("*.json")), what="the cancel to be claimed")
    # A later loop of the supervisor: a file for another run, refused, proves the loop went
    # past the point where a queued cancel kills the worker holding its run.
    write_message(env.home, Message(run="other", trigger="nosuch", by="alice"))
    wait_for(lambda: len(list(env.home.inbox_rejected.glob("*.error.txt"))) == 1, what="the stray file refused")
    _open_gate(env)
    wait_for(lambda: env.records("r1")[-1]["type"] == "trigger_refused", what="the late cancel refused")
    assert sup.poll() is None
    assert "killing worker" not in env.log(), env.log()
    assert len(_releases(env)) == 1, _releases(env)  # on_cancel ran once
    assert [r["type"] for r in env.records("r1")].count("compensation_finished") == 1


def test_an_on_cancel_that_heartbeats_is_not_killed_at_the_job_timeout(env, machine_dir):
    _setup(env, machine_dir, "beating_cancel", WAITS.format(release="beating_release").replace(
        "name: waits_cancel", "name: beating_cancel"))
    env.start("r1", "beating_cancel")
    sup = env.supervise("--workers", "1", "--job-timeout", "5")
    env.wait_status("r1", "waiting", "review")
    write_message(env.home, Message(run="r1", cancel=True, by="ops"))
    wait_for(lambda: len(_releases(env)) == 1, what="on_cancel to be running")
    beats = Path(f"{env.ledger}.beats")
    for n in range(1, 5):  # 8 s of clock, past the 5 s limit, 2 s at a time, each seen by a heartbeat
        now = env.clock.advance(2)
        wait_for(lambda now=now: beats.exists() and beats.read_text().startswith(now.strftime("%Y-%m-%dT%H:%M:%S")),
                 what="a heartbeat at the new clock time")
        # ...and by a loop of the supervisor after it: a stray file, refused, proves one went by
        write_message(env.home, Message(run="ghost", trigger="approve", by="alice"))
        wait_for(lambda n=n: len(list(env.home.inbox_rejected.glob("*.error.txt"))) == n, what="the stray file refused")
    _open_gate(env)
    wait_for(lambda: env.records("r1")[-1]["type"] == "compensation_finished", what="on_cancel to finish")
    assert sup.poll() is None
    assert "killing worker" not in env.log(), env.log()
    assert len(_releases(env)) == 1, _releases(env)


def test_a_stop_during_on_cancel_past_the_grace_leaves_it_owed_and_the_next_start_finishes_it(env, machine_dir):
    _setup(env, machine_dir, "waits_cancel", WAITS.format(release="slow_release"))
    env.start("r1", "waits_cancel")
    sup = env.supervise("--workers", "1", "--grace", "1")
    env.wait_status("r1", "waiting", "review")
    write_message(env.home, Message(run="r1", cancel=True, by="ops"))
    wait_for(lambda: len(_releases(env)) == 1, what="on_cancel to be running")
    sup.send_signal(signal.SIGTERM)
    sup.wait(20)
    assert env.records("r1")[-1]["type"] == "compensation_started"
    assert env.row("r1").owes == "on_cancel" and env.row("r1").stalled
    _open_gate(env)
    env.once()
    assert env.records("r1")[-1]["type"] == "compensation_finished"
    assert [r["attempt"] for r in _releases(env)] == [1, 2]
    assert list(env.home.inbox_done.glob("*.json")), "the cancel file is filed as applied"
    assert not env.claimed_files()


def test_ratchet_run_stopped_twice_during_an_owed_on_cancel_says_so_and_exits_130(env, machine_dir):
    _setup(env, machine_dir, "waits_cancel", WAITS.format(release="slow_release"))
    env.start("r1", "waits_cancel")
    # A cancel whose on_cancel is cut off by a crash (kill -9 of the process calling it).
    code = ("import sys; from engine.run.runner import Runner; from engine.supervise.message import Message;"
            "Runner(sys.argv[1], machines_dir=sys.argv[2]).advance('r1');"
            "Runner(sys.argv[1], machines_dir=sys.argv[2]).deliver('r1', Message(run='r1', cancel=True, by='ops'))")
    with subprocess.Popen([sys.executable, "-c", code, str(env.home.root), str(machine_dir)],
                          cwd=env.dir, env=env.env) as proc:
        wait_for(lambda: len(_releases(env)) == 1, what="on_cancel to be running")
        proc.kill()
    assert env.records("r1")[-1]["type"] == "compensation_started"
    # `ratchet run --id r1` continues it: on_cancel is called again; Ctrl-C twice while it runs.
    with subprocess.Popen([sys.executable, "-c", "from engine.cli import main; main()", "run",
                           str(machine_dir / "waits_cancel.yaml"), "--id", "r1"],
                          cwd=env.dir, env=env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as run:
        wait_for(lambda: len(_releases(env)) == 2, what="on_cancel to be called again")
        run.send_signal(signal.SIGINT)
        assert "stopping after the current step" in run.stderr.readline()  # the first press was taken
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=20)
    assert env.records("r1")[-1]["type"] == "compensation_started"  # cut off again: still owed
    assert run.returncode == 130, (run.returncode, out, err)
    assert "stopped during its on_cancel" in out and "ratchet run" in err


# A supervisor built from its parts, in a process of its own: its only worker holds an
# advance of r1 and has not answered (SIGSTOP), while r1's journal already says `waiting`:
# the instant between a worker's last record and its result, held open.
HELD_ANSWER = '''
import os, signal, sys
from pathlib import Path
from engine.home import Home
from engine.supervise.message import Message, write_message
from engine.supervise.supervisor import Supervisor

home = Home(Path(sys.argv[1]))
sup = Supervisor(home, workers=1, machines_dir=Path(sys.argv[2]))
sup.mailroom.open(settle=0.0)
sup.runs.scan()
sup.pool.start()
worker = sup.pool.workers[0]
os.kill(worker.pid, signal.SIGSTOP)
sup.pool.submit(sup.timeouts.advance_job("r1", sup.runs["r1"].state))
write_message(home, Message(run="r1", cancel=True, by="ops"))
sup.mailroom.scan()
assert sup.mailroom.cancelling() == ["r1"], sup.mailroom.cancelling()
sup._refresh_busy()
sup._kill_cancelled()
kept = sup.pool.holding("r1") is worker
print("kept" if kept else "killed")
if kept:
    os.kill(worker.pid, signal.SIGCONT)
    results = []
    while not results:
        sup._sleep(sup.pacing.tick, once=True)
        results = sup.pool.collect()
    print(results[0].outcome)
sup._shutdown(None)
'''


def test_a_worker_whose_advance_ended_waiting_is_not_killed_for_a_cancel_before_it_answers(env, machine_dir):
    # The cause of the flaky heartbeat test above: a cancel that comes just after a worker
    # journaled `waiting`, before its result reached the supervisor, killed that worker
    # ("a cancel is waiting for its run"), though it had nothing left to cut off.
    _setup(env, machine_dir, "waits_cancel", WAITS.format(release="slow_release"))
    env.start("r1", "waits_cancel")
    env.once()
    assert env.row("r1").status == "waiting"
    out = subprocess.run([sys.executable, "-c", HELD_ANSWER, str(env.home.root), str(machine_dir)], cwd=env.dir,
                         env=env.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["kept", "ok"], (out.stdout, out.stderr)
    assert "killing worker" not in out.stderr, out.stderr
    _open_gate(env)
    env.once()  # the cancel, still queued, is delivered: on_cancel runs once
    assert env.records("r1")[-1]["type"] == "compensation_finished"
    assert len(_releases(env)) == 1, _releases(env)
