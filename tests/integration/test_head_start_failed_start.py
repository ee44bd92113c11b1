"""A supervisor whose start fails after its head start (engine.supervise.head_start) stops its
head start's workers as a graceful stop does: the step in hand finishes and is journaled, no
next step starts, and no process is left behind.

Before, such a failure (here the inbox's watch: inotify's limit reached) ended the process with
the workers' steps in hand: killed mid-action, a crash to replay (a non-idempotent step would
have been escalated to a person).

Real processes: a crashed `ratchet run`, then the `ratchet` console script, whose watch is made
to fail once the recovered step's action is running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from waiting import wait_for

RATCHET = str(Path(sys.executable).parent / "ratchet")
MACHINE = """
name: slow
version: 1
initial: work
states:
  work: {action: slow_actions:work}
  more: {action: slow_actions:work}
  done: {final: true}
transitions:
  - {trigger: ok, source: work, dest: more}
  - {trigger: ok, source: more, dest: done}
"""
# The action says it began, then takes its time (a gate that never opens: 2 s).
ACTIONS = """
import os, time
from pathlib import Path

def work(ctx):
    here = Path(__file__).parent
    with open(here / "began.txt", "a") as f:
        f.write(ctx.idempotency_key + "\\n")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not (here / "gate").exists():
        time.sleep(0.05)
"""
# The console script as it is, but its watch fails once the recovered step's action began.
FAILING_WATCH = """
import os, runpy, sys, time
from pathlib import Path
import engine.supervise.watcher as watcher

began = Path(sys.argv[1]) / "began.txt"

def start(self):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not began.exists():
        time.sleep(0.02)
    raise OSError(28, "inotify watch limit reached")

watcher.Watcher.start = start
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _types(home: Path, run_id: str) -> list[str]:
    return [json.loads(line)["type"] for line in (home / "runs" / f"{run_id}.jsonl").read_text().splitlines()]


def _ours(place: Path) -> list[int]:
    """Processes still running with this test's folder on their command line."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(place).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return pids


def test_a_start_that_fails_after_the_head_start_lets_its_steps_in_hand_finish(tmp_path):
    (tmp_path / "slow.yaml").write_text(MACHINE)
    (tmp_path / "slow_actions.py").write_text(ACTIONS)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")} | {"RATCHET_HOME": str(home)}
    crashed = subprocess.run([RATCHET, "run", "slow.yaml", "--id", "crashed"], cwd=tmp_path,
                             env=env | {"RATCHET_CRASH_AT": "before_action:1"}, capture_output=True, text=True,
                             timeout=60)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    sup = subprocess.run([sys.executable, "-c", FAILING_WATCH, str(tmp_path), RATCHET, "supervise"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    assert sup.returncode == 1, sup.stderr
    assert sup.stderr.splitlines()[-1] == "ratchet: error: [Errno 28] inotify watch limit reached", sup.stderr
    assert (tmp_path / "began.txt").read_text() == "crashed/work/1\n"  # the head start's step, and no other
    # The step in hand finished and was journaled; the next one was not started.
    assert _types(home, "crashed") == ["run_started", "step_started", "step_abandoned", "step_started",
                                       "step_succeeded", "transition"], _types(home, "crashed")
    wait_for(lambda: not _ours(tmp_path), timeout=10, what="the fork server and workers to end")
