"""kill -9 between a seal and its side file: what verify says meanwhile, and that reopening repairs it.

A seal goes to the journal in its batch's one write and fsync; the side file follows
(engine.run.sealing). The real `ratchet run` is killed (RATCHET_CRASH_AT) right after each
durable append, so also right after the run's first seal and before its side file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

RATCHET = shutil.which("ratchet") or str(Path(sys.executable).parent / "ratchet")
ROOT = Path(__file__).resolve().parents[2]


def ratchet(home: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RATCHET_HOME": str(home), "RATCHET_LEDGER": str(home.parent / "ledger.jsonl")}
    for name in ("RATCHET_CRASH_AT", "RATCHET_CRASH_COUNT", "RATCHET_CLOCK_FILE"):
        env.pop(name, None)
    if crash_at:
        env["RATCHET_CRASH_AT"] = crash_at
    return subprocess.run([RATCHET, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


START = ("run", "renewal_review", "--input", "customer=acme", "--id", "r1")


@pytest.mark.faults
def test_a_kill_right_after_the_first_seal_is_reported_then_repaired_by_the_next_open(tmp_path):
    home = tmp_path / "home"
    killed = ratchet(home, *START, crash_at="after_append:2")  # run_started+step, then outcome..waiting+seal
    assert killed.returncode == -signal.SIGKILL
    lines = (home / "runs" / "r1.jsonl").read_text().splitlines()
    assert '"type":"sealed"' in lines[-1] and not (home / "seals" / "r1.json").exists()
    meanwhile = ratchet(home, "verify", "r1")
    assert meanwhile.returncode == 1 and "the home keeps no seal of it" in meanwhile.stdout  # said, not hidden
    again = ratchet(home, *START)  # any process that opens the run finishes its sealing
    assert again.returncode == 0, again.stderr
    assert (home / "runs" / "r1.jsonl").read_text().splitlines() == lines  # nothing appended: only the side file
    out = ratchet(home, "verify", "r1")
    assert (out.returncode, out.stdout) == (0, "r1: ok (6 records; sealed through line 5)\n")


@pytest.mark.faults
@pytest.mark.parametrize("n", [1, 2])
def test_a_run_killed_after_any_append_ends_sealed_and_verified(tmp_path, n):
    home = tmp_path / "home"
    assert ratchet(home, *START, crash_at=f"after_append:{n}").returncode == -signal.SIGKILL
    assert ratchet(home, *START).returncode == 0
    assert ratchet(home, "approve", "r1", "--by", "alice").returncode == 0
    done = ratchet(home, "supervise", "--once")
    assert "run r1 finished in 'sent'" in done.stderr, done.stderr
    out = ratchet(home, "verify", "r1")
    assert out.returncode == 0 and out.stdout.startswith("r1: ok (") and "; sealed through line " in out.stdout
    kinds = [line.split('"type":"')[1].split('"')[0] for line in (home / "runs" / "r1.jsonl").read_text().splitlines()]
    assert kinds[-2:] == ["run_finished", "sealed"] and kinds.count("sealed") == 2


TASKS = """
name: tasks
version: 1
initial: a
states:
  a: {action: tasks_acts:work}
  done: {final: true}
transitions:
  - {trigger: ok, source: a, dest: done}
"""


@pytest.mark.faults
def test_a_run_killed_between_its_only_seal_at_the_end_and_the_side_file_is_repaired_by_the_next_supervisor(
        tmp_path):
    """A run that never rested until it ended has one seal, in its last batch: killed right
    after it, the run is over and nothing opens it again; the next `supervise` repairs the
    side file, so verify and archive do not fail on it forever."""
    home = tmp_path / "home"
    (tmp_path / "tasks.yaml").write_text(TASKS)
    (tmp_path / "tasks_acts.py").write_text("def work(ctx):\n    return {'trigger': 'ok'}\n")
    killed = ratchet(home, "run", str(tmp_path / "tasks.yaml"), "--id", "t1", crash_at="after_append:2")
    assert killed.returncode == -signal.SIGKILL
    kinds = [line.split('"type":"')[1].split('"')[0] for line in (home / "runs" / "t1.jsonl").read_text().splitlines()]
    assert kinds[-2:] == ["run_finished", "sealed"] and kinds.count("sealed") == 1
    assert "the home keeps no seal of it" in ratchet(home, "verify", "t1").stdout
    done = ratchet(home, "supervise", "--once")
    assert done.returncode == 0, done.stderr
    out = ratchet(home, "verify", "t1")
    assert (out.returncode, out.stdout) == (0, "t1: ok (6 records; sealed through line 5)\n")
    assert len((home / "runs" / "t1.jsonl").read_text().splitlines()) == 6  # nothing appended: only the side file
