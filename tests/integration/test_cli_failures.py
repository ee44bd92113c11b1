"""A failed step has a place: `tail` shows its file:line, `tail --verbose` and `--debug run` its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RATCHET = str(Path(sys.executable).parent / "ratchet")

MACHINE = """
name: kerr
version: 1
initial: charge
states:
  charge: {action: kerr_acts:charge}
  done: {final: true}
transitions:
  - {trigger: ok, source: charge, dest: done}
"""

ACTIONS = """def charge(ctx):
    return {"total": ctx.data["amount"] * 2}
"""


def ratchet(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    out = subprocess.run([RATCHET, *args], env=env | {"RATCHET_HOME": str(tmp_path / "home")}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def test_a_failure_shows_where_it_was_raised_and_its_traceback_on_demand(tmp_path):
    (tmp_path / "kerr.yaml").write_text(MACHINE)
    (tmp_path / "kerr_acts.py").write_text(ACTIONS)
    trace = ['    Traceback (most recent call last):',
             f'      File "{tmp_path / "kerr_acts.py"}", line 2, in charge',
             '        return {"total": ctx.data["amount"] * 2}']

    debug = ratchet(tmp_path, "--debug", "run", "kerr.yaml", "--id", "k1").stdout.splitlines()
    failed = next(i for i, line in enumerate(debug) if "step_failed" in line)
    assert "charge  attempt 1  KeyError: 'amount'  at kerr_acts.py:2 (" in debug[failed]
    assert debug[failed + 1:failed + 4] == trace and debug[failed + 5] == "    KeyError: 'amount'"
    assert "escalated" in debug[failed + 6]

    plain = ratchet(tmp_path, "tail", "k1").stdout.splitlines()
    assert [line for line in plain if "step_failed" in line] == [debug[failed]]
    assert not any("Traceback" in line for line in plain)
    assert ratchet(tmp_path, "tail", "k1", "--verbose").stdout.splitlines() == debug[:-1]  # all but the summary
    quiet = ratchet(tmp_path, "run", "kerr.yaml", "--id", "k2").stdout  # no --debug: the place, no traceback
    assert "KeyError: 'amount'  at kerr_acts.py:2 (" in quiet and "Traceback" not in quiet
