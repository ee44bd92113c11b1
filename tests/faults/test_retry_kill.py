"""Kill -9 inside attempt 2 of a retried step: the attempts go on from 2, never from 1.

`ratchet run` is a real process on a file clock (it sleeps through back-offs by moving
the clock); RATCHET_CRASH_AT kills it with SIGKILL inside the second attempt, before the
action is called or inside it after the call is on the ledger. A second `ratchet run`
replays the journal and goes on. The ledger, kept by the action outside the journal,
shows every call: attempt numbers never go back, attempt 3 is the last, and only the
attempt cut off with an unknown outcome is called again (same attempt, same key).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.run.replay import fold
from journal import FileStore, StepAbandoned, StepStarted, verify

HERE = Path(__file__).resolve().parent

MACHINE = """
name: always_down
version: 1
initial: call
states:
  call:
    action: retry_actions:always_fails
    retry: {attempts: 3, backoff: 1s, factor: 2, jitter: false}
  done: {final: true}
transitions:
  - {trigger: ok, source: call, dest: done}
"""


def ratchet_run(folder: Path, **env: str) -> subprocess.CompletedProcess:
    """`ratchet run MACHINE --id r1` as its own process, on the folder's home and clock."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    environ.update(RATCHET_HOME=str(folder / "home"), RATCHET_CLOCK_FILE=str(folder / "clock"),
                   RATCHET_LEDGER=str(folder / "ledger.jsonl"), **env)
    cmd = [sys.executable, "-c", "from engine.cli import main; main()",
           "run", str(folder / "always_down.yaml"), "--id", "r1"]
    return subprocess.run(cmd, cwd=folder, env=environ, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("point, attempts", [
    ("before_action:2", [1, 2, 3]),    # killed as attempt 2 starts: it is called once, after the restart
    ("mid_action:2", [1, 2, 2, 3]),    # killed inside attempt 2, after its call: outcome unknown, re-run as 2
])
def test_a_kill_inside_attempt_2_resumes_at_attempt_2(tmp_path: Path, point: str, attempts: list[int]):
    (tmp_path / "always_down.yaml").write_text(MACHINE)
    shutil.copy(HERE / "retry_actions.py", tmp_path / "retry_actions.py")
    (tmp_path / "clock").write_text("2026-03-02T09:00:00.000000Z")

    killed = ratchet_run(tmp_path, RATCHET_CRASH_AT=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = ratchet_run(tmp_path)
    assert finished.returncode == 0, finished.stderr

    ledger = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert [c["attempt"] for c in ledger] == attempts  # a reset count would give [1, 1, 2, 3] / [1, 2, 1, 2, 3]
    assert {c["key"] for c in ledger} == {"r1/call/1"}
    assert len({c["pid"] for c in ledger}) == 2  # two processes made the calls
    store = FileStore(tmp_path / "home")
    assert verify(store.path("r1"), run_id="r1").ok
    records = store.read("r1").records
    assert [r.attempt for r in records if isinstance(r, StepStarted)] == [1, 2, 2, 3]
    assert [(r.attempt, r.reason) for r in records if isinstance(r, StepAbandoned)] == [(2, "worker died")]
    rs = fold(records)
    assert (rs.status, rs.escalation.reason) == ("escalated", "retries exhausted")
    assert "attempt 3 of 3 failed" in rs.escalation.detail
