"""`ratchet status` says what is true now: in flight only while a process holds the run, else
stalled; overdue waits; retry x/y. Real processes, a real lock holder, a file clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from engine.cli.supervision import status_text
from engine.home import Home
from engine.run.clock import FileClock
from engine.supervise.status import status_rows

from waiting import wait_for

RATCHET = str(Path(sys.executable).parent / "ratchet")

MACHINE = """
name: status_demo
version: 1
initial: work
states:
  work:
    action: status_acts:work
    retry: {attempts: 5, backoff: 10m, max_backoff: 1h, factor: 1, jitter: false}
  review: {timeout: 1h}
  done: {final: true}
transitions:
  - {trigger: ok, source: work, dest: review}
  - {trigger: approve, source: review, dest: done}
"""

# work: blocks until the file `gate` (input) exists, or fails if `fail` is set.
ACTIONS = """
import os, time
from pathlib import Path

def work(ctx):
    gate = ctx.input.get("gate")
    if gate:
        Path(gate + ".started").write_text(str(os.getpid()))
        while not Path(gate).exists():
            time.sleep(0.01)
    if ctx.input.get("fail"):
        raise RuntimeError("service down")
"""


@pytest.fixture
def env(tmp_path: Path) -> dict:
    (tmp_path / "machine.yaml").write_text(MACHINE)
    (tmp_path / "status_acts.py").write_text(ACTIONS)
    FileClock(tmp_path / "clock").set(_start())
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return clean | {"RATCHET_HOME": str(tmp_path / "home"), "RATCHET_CLOCK_FILE": str(tmp_path / "clock")}


def _start():
    from datetime import UTC, datetime
    return datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def ratchet(env: dict, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([RATCHET, *args], env=env, cwd=Path(env["RATCHET_HOME"]).parent,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def row(env: dict, run_id: str) -> tuple[dict, str]:
    """(the run's `status --json` object, its STATUS cell in the table), read in this process
    (status only reads; the processes that matter, holders and supervisors, are real)."""
    found = status_rows(Home(env["RATCHET_HOME"]), [run_id], now=FileClock(env["RATCHET_CLOCK_FILE"]).now())[0]
    return json.loads(json.dumps(found.to_dict())), status_text(found)


def cli_row(env: dict, run_id: str) -> tuple[dict, str]:
    """The same, from `ratchet status` itself (its clock from RATCHET_CLOCK_FILE)."""
    data = json.loads(ratchet(env, "status", run_id, "--json").stdout)[0]
    table = ratchet(env, "status", run_id).stdout.splitlines()
    header, line = table[0], table[1]
    return data, line[header.index("STATUS"):header.index("WAITING ON")].strip()


def test_in_flight_only_while_a_process_holds_the_run_then_stalled_after_kill_9(env, tmp_path):
    gate = tmp_path / "gate"
    run = subprocess.Popen([RATCHET, "run", "machine.yaml", "--id", "r1", "--input", f"gate={gate}"],
                           env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(Path(f"{gate}.started").exists, what="the step to start")
        data, cell = cli_row(env, "r1")
        assert (data["status"], data["in_flight"], data["held"], data["stalled"]) == ("running", True, True, False)
        assert cell == "running (in flight)"
        run.send_signal(signal.SIGKILL)
        assert run.wait(timeout=10) == -9
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=10)
    data, cell = row(env, "r1")
    assert (data["status"], data["in_flight"], data["held"], data["stalled"]) == ("running", True, False, True)
    assert cell == "stalled (no worker)"
    stalled = json.loads(ratchet(env, "status", "--status", "stalled", "--json").stdout)
    assert [r["run_id"] for r in stalled] == ["r1"]
    assert json.loads(ratchet(env, "status", "--status", "overdue", "--json").stdout) == []
    gate.write_text("")
    ratchet(env, "supervise", "--once")  # what "stalled" asks for: a supervisor resumes it
    assert row(env, "r1")[1] == "waiting"


def test_a_wait_past_its_deadline_is_overdue(env, tmp_path):
    ratchet(env, "run", "machine.yaml", "--id", "r1")
    data, cell = row(env, "r1")
    assert (cell, data["deadline"], data["overdue_s"]) == ("waiting", "2026-11-30T10:00:00.000000Z", None)
    FileClock(tmp_path / "clock").set(_start() + timedelta(hours=4, minutes=20))
    data, cell = cli_row(env, "r1")
    assert (cell, data["overdue_s"]) == ("waiting (overdue by 3 h)", 3 * 3600 + 20 * 60)
    overdue = json.loads(ratchet(env, "status", "--status", "overdue", "--json").stdout)
    assert [r["run_id"] for r in overdue] == ["r1"]
    unknown = subprocess.run([RATCHET, "status", "--status", "wating"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 2 and unknown.stderr.startswith("ratchet: error: ")
    assert "2026-11-30 10:00:00Z" in ratchet(env, "status").stdout  # the DEADLINE column: one time format


def test_a_run_sleeping_before_a_retry_says_which_attempt_of_how_many_and_when(env, tmp_path):
    ratchet(env, "start", "machine.yaml", "--id", "r1", "--input", "fail=true")
    ratchet(env, "supervise", "--once")
    data, cell = row(env, "r1")
    assert (data["status"], data["retry_attempt"], data["retry_attempts"]) == ("retrying", 2, 5)
    assert cell == "retry 2/5 at 2026-11-30 09:10:00Z"
    FileClock(tmp_path / "clock").set(_start() + timedelta(minutes=10))
    ratchet(env, "supervise", "--once")
    assert row(env, "r1")[1] == "retry 3/5 at 2026-11-30 09:20:00Z"
    FileClock(tmp_path / "clock").set(_start() + timedelta(hours=1))  # and no supervisor runs
    data, cell = cli_row(env, "r1")
    assert (cell, data["overdue_s"]) == ("retry 3/5 at 2026-11-30 09:20:00Z (overdue by 40 m)", 40 * 60)
