"""`ratchet supervise` run as the installed console script, as users run it: its workers,
forked from its fork server (engine.supervise.forkserver), are healthy and run the steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RATCHET = str(Path(sys.executable).parent / "ratchet")

MACHINE = """
name: two_steps
version: 1
initial: first
states:
  first: {action: two_steps_actions:step}
  second: {action: two_steps_actions:step}
  done: {final: true}
transitions:
  - {trigger: ok, source: first, dest: second}
  - {trigger: ok, source: second, dest: done}
"""


def test_the_console_script_supervises_with_healthy_workers(tmp_path):
    (tmp_path / "two_steps.yaml").write_text(MACHINE)
    (tmp_path / "two_steps_actions.py").write_text("def step(ctx):\n    return None\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env["RATCHET_HOME"] = str(tmp_path / "home")
    started = subprocess.run([RATCHET, "start", "two_steps.yaml", "--id", "r1"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    done = subprocess.run([RATCHET, "--home", env["RATCHET_HOME"], "supervise", "--once"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "run r1 finished in 'done'" in done.stderr
    assert "Traceback" not in done.stderr and "stalled" not in done.stderr, done.stderr
