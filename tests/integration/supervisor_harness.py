"""A real `ratchet supervise` subprocess on a tmp home, with a file clock and a ledger."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC
from pathlib import Path

from engine.home import Home
from engine.run.clock import FileClock
from engine.run.runner import Runner
from engine.supervise.message import Message, write_message
from engine.supervise.status import StatusRow, status_rows

from waiting import wait_for

HERE = Path(__file__).parent

MACHINE = """
name: approval
version: 1
initial: prepare
states:
  prepare:
    action: sup_acts:work
    timeout: 2s
    retry: {attempts: 3, backoff: 1s, factor: 1}
  review: {approvers: [alice], timeout: 1d}
  send: {action: sup_acts:work}
  done: {final: true}
  rejected: {final: true, outcome: rejected}
transitions:
  - {trigger: ok, source: prepare, dest: review}
  - {trigger: approve, source: review, dest: send}
  - {trigger: reject, source: review, dest: rejected}
  - {trigger: ok, source: send, dest: done}
"""

# A wait that escalates when it expires (no `timeout` transition), with an on_escalate.
# Four steps, the second not idempotent: what a stop must never cut in the middle of.
SHOP = """
name: shop
version: 1
initial: reserve
states:
  reserve: {action: sup_acts:work}
  charge: {action: sup_acts:work, idempotent: false}
  ship: {action: sup_acts:work}
  receipt: {action: sup_acts:work}
  done: {final: true}
transitions:
  - {trigger: ok, source: reserve, dest: charge}
  - {trigger: ok, source: charge, dest: ship}
  - {trigger: ok, source: ship, dest: receipt}
  - {trigger: ok, source: receipt, dest: done}
"""

NOTIFYING = """
name: notifying
version: 1
initial: review
states:
  review: {approvers: [alice], timeout: 1h}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
on_escalate: sup_acts:notify
"""

# Every status a cancel can find: a retry sleeping an hour, a non-retryable failure that
# escalates, a non-idempotent step (gate it to hold it in flight), a wait; on_cancel compensates.
CANCELLING = """
name: cancelling
version: 1
initial: prepare
on_cancel: sup_acts:release
states:
  prepare:
    action: sup_acts:work
    retry: {attempts: 2, backoff: 1h, factor: 1, jitter: false}
    non_retryable: [Fatal]
  charge: {action: sup_acts:work, idempotent: false}
  review: {approvers: [alice], timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: ok, source: prepare, dest: charge}
  - {trigger: ok, source: charge, dest: review}
  - {trigger: approve, source: review, dest: done}
"""

# The same, but its prepare action's module takes a while to import (like a heavy SDK):
# a fresh worker is busy loading it for a moment before it writes anything.
SLOW_START = MACHINE.replace("name: approval", "name: slow_start").replace(
    "action: sup_acts:work\n    timeout", "action: sup_slow:work\n    timeout")
SLOW_MODULE = '''"""Imports slowly, then offers sup_acts.work."""
import time

time.sleep(0.5)

from sup_acts import work  # noqa: E402,F401
'''


class Env:
    """A tmp home with the test machine, a file clock, a ledger, and supervisor processes."""

    def __init__(self, tmp_path: Path, machine_dir: Path) -> None:
        self.dir = tmp_path
        self.home = Home(tmp_path / "home").ensure()
        self.machine = machine_dir / "approval.yaml"
        self.clock = FileClock(tmp_path / "clock")
        self.clock.set(_start())
        self.ledger = tmp_path / "ledger.jsonl"
        self.env = {**os.environ, "RATCHET_HOME": str(self.home.root), "RATCHET_CLOCK_FILE": str(self.clock.path),
                    "RATCHET_LEDGER": str(self.ledger)}
        self.procs: list[subprocess.Popen] = []
        os.environ["RATCHET_LEDGER"] = str(self.ledger)  # for actions run in-process (none by default)

    # --- processes ---------------------------------------------------------------------------

    def supervise(self, *args: str) -> subprocess.Popen:
        cmd = [sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--rescan", "1", *args]
        with open(self.dir / f"supervisor-{len(self.procs)}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(cmd, cwd=self.dir, env=self.env, stdout=subprocess.PIPE, stderr=log)
        self.procs.append(proc)
        return proc

    def once(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--once", *args]
        return subprocess.run(cmd, cwd=self.dir, env=self.env, capture_output=True, timeout=timeout)

    def cli(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        """`ratchet ARGS...` in this home (extra environment variables as keywords)."""
        cmd = [sys.executable, "-c", "from engine.cli import main; main()", *args]
        return subprocess.run(cmd, cwd=self.dir, env={**self.env, **env}, capture_output=True, timeout=timeout)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()

    # --- runs and files ---------------------------------------------------------------------

    def start(self, run_id: str, machine: str = "approval", **inputs) -> str:
        path = self.machine.with_name(f"{machine}.yaml")
        return Runner(self.home, clock=self.clock, machines_dir=self.dir).start(path, inputs, run_id=run_id)

    def send(self, run: str, trigger: str, by: str = "alice", **fields) -> Path:
        return write_message(self.home, Message(run=run, trigger=trigger, by=by, **fields))

    def rows(self) -> dict[str, StatusRow]:
        return {r.run_id: r for r in status_rows(self.home)}

    def row(self, run_id: str) -> StatusRow:
        return status_rows(self.home, [run_id])[0]

    def wait_status(self, run_id: str, status: str, state: str | None = None, timeout: float = 20.0) -> StatusRow:
        def check():
            row = self.row(run_id)
            return row if row.status == status and (state is None or row.state == state) else None
        return wait_for(check, timeout=timeout, what=f"run {run_id} to be {status} {state or ''}")

    def records(self, run_id: str) -> list[dict]:
        """The run's records as dicts, without its seals (what the run did: engine.run.sealing)."""
        return [r for r in self.all_records(run_id) if r["type"] != "sealed"]

    def all_records(self, run_id: str) -> list[dict]:
        return [json.loads(line) for line in self.home.store.path(run_id).read_text().splitlines()]

    def ledger_lines(self) -> list[dict]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def claimed_files(self) -> list[Path]:
        return [p for p in self.home.inbox_claimed.rglob("*") if not p.is_dir()]

    def notified(self) -> list[dict]:
        path = Path(f"{self.ledger}.notified")
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def ticket(self, run_id: str) -> dict | None:
        path = self.home.escalations / f"{run_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def started_marker(self, run_id: str) -> Path:
        return Path(f"{self.ledger}.{run_id}.started")

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("supervisor-*.log")))


_FOLDER: list[Path] = []


def machine_folder(tmp_path_factory) -> Path:
    """The test machine and its actions, in one folder for the whole session.

    One folder, because the loader refuses a module name already imported from elsewhere.
    """
    if _FOLDER:
        return _FOLDER[0]
    folder = tmp_path_factory.mktemp("supervisor-machine")
    _FOLDER.append(folder)
    (folder / "approval.yaml").write_text(MACHINE)
    (folder / "notifying.yaml").write_text(NOTIFYING)
    (folder / "cancelling.yaml").write_text(CANCELLING)
    (folder / "shop.yaml").write_text(SHOP)
    (folder / "slow_start.yaml").write_text(SLOW_START)
    (folder / "sup_slow.py").write_text(SLOW_MODULE)
    shutil.copy(HERE / "sup_acts.py", folder / "sup_acts.py")
    return folder


def _start():
    from datetime import datetime
    return datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def written_message(env: Env, result: object) -> object:
    """The message a CLI command (a click result) wrote into the inbox, read as the
    supervisor reads it: claimed, checked, parsed."""
    from engine.supervise.inbox import ClaimBox, read_message

    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    path = Path(result.stdout.strip())  # type: ignore[attr-defined]
    assert path.parent == env.home.inbox
    box = ClaimBox(env.home)
    try:
        return read_message(box.claim(path.name))
    finally:
        box.close()
