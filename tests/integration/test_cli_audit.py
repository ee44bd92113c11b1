"""`ratchet verify` and `ratchet tail`: through click's CliRunner and as the real console script."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from journal import (
    FileStore,
    StepFailed,
    StepStarted,
    StepSucceeded,
    Transition,
    TriggerReceived,
    Waiting,
)

from damage import lines_of, write_lines
from journal_builders import run_started

RATCHET = shutil.which("ratchet") or str(Path(sys.executable).parent / "ratchet")
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  #\d+ +[a-z_]+ +\S")


def run_records(run_id: str) -> list:
    return [
        run_started(run_id, "renewal_review", input={"customer": "acme"}, by="alice"),
        StepStarted(state="draft", attempt=1, idempotency_key=f"{run_id}/draft/1"),
        StepFailed(state="draft", attempt=1, error="503\x1b[2J", error_type="BillingUnavailable", duration_ms=120.0),
        StepStarted(state="draft", attempt=2, idempotency_key=f"{run_id}/draft/1"),
        StepSucceeded(state="draft", attempt=2, trigger="ok", data={"summary": "renew\x1b[31m"}, duration_ms=40.0),
        Transition(trigger="ok", source="draft", dest="review"),
        Waiting(state="review", triggers=["approve", "reject"], approvers=["alice", "bob"],
                deadline="2026-11-29T09:41:03.000000Z"),
        TriggerReceived(trigger="approve", state="review", by="bob", comment="fine"),
    ]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    store = FileStore(tmp_path / "home")
    for run_id in ("acme", "globex"):
        with store.writer(run_id, create=True) as w:
            w.append_many(run_records(run_id))
    return tmp_path / "home"


def cli(home: Path, *args: str):
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


# --- verify ---------------------------------------------------------------------------


def test_verify_all_journals_ok(home: Path) -> None:
    result = cli(home, "verify")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["acme: ok (8 records)", "globex: ok (8 records)"]


def test_verify_names_the_broken_line_and_exits_1(home: Path) -> None:
    path = home / "runs" / "globex.jsonl"
    lines = lines_of(path)
    lines[2] = lines[2].replace(b"Billing", b"Shipping")
    write_lines(path, lines)
    result = cli(home, "verify")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "acme: ok (8 records)",
        f"{path}:4: hash chain broken (prev does not match line 3: line 3 or this prev was changed)",
    ]


def test_verify_reports_a_torn_tail_without_failing(home: Path) -> None:
    with open(home / "runs" / "acme.jsonl", "ab") as f:
        f.write(b'{"type":"transit')
    result = cli(home, "verify", "acme")
    assert result.exit_code == 0
    assert result.stdout == "acme: ok (8 records); torn tail (16 bytes, a crash mid-write; cut on next open)\n"


@pytest.mark.parametrize(
    "run_id, message",
    [("nope", "no run 'nope' in "), ("../etc/passwd", "invalid run id '../etc/passwd'")],
)
def test_verify_and_tail_refuse_unknown_or_invalid_ids_in_one_line(home: Path, run_id: str, message: str) -> None:
    for args in (["verify", "acme", run_id], ["tail", run_id]):
        result = cli(home, *args)
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr.startswith(f"ratchet: error: {message}") and result.stderr.count("\n") == 1


def test_verify_with_no_journals_says_so(tmp_path: Path) -> None:
    result = cli(tmp_path, "verify")
    assert result.exit_code == 0 and "no journals in" in result.stderr


# --- tail -----------------------------------------------------------------------------


def test_tail_prints_one_readable_line_per_record(home: Path) -> None:
    result = cli(home, "tail", "acme")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 8 and all(LINE.match(line) for line in lines), lines
    assert "#3  step_failed      draft  attempt 1  BillingUnavailable: 503\\x1b[2J (120 ms)" in lines[2]
    assert "renewal_review v1  run acme  by alice" in lines[0]
    assert "draft → review  on ok" in lines[5]
    assert "review  for approve|reject  approvers alice, bob  until 2026-11-29 09:41:03Z" in lines[6]
    assert "approve  by bob" in lines[7]
    assert "\x1b" not in result.stdout and "\\u001b[31m" in lines[4]  # data cannot drive the terminal


def test_tail_json_passes_the_exact_lines_through(home: Path) -> None:
    result = cli(home, "tail", "acme", "--json")
    assert result.exit_code == 0
    assert result.stdout_bytes == (home / "runs" / "acme.jsonl").read_bytes()


def test_tail_notes_a_torn_tail_on_stderr_and_stops_at_damage(home: Path) -> None:
    path = home / "runs" / "acme.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"type":"transit')
    result = cli(home, "tail", "acme")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 8
    assert "torn tail (16 bytes, a crash mid-write" in result.stderr

    path.write_bytes(path.read_bytes() + b"\n")  # the torn bytes are now a complete, invalid line
    result = cli(home, "tail", "acme")
    assert result.exit_code == 1 and len(result.stdout.splitlines()) == 8
    assert result.stderr.startswith(f"ratchet: error: {path}:9: not a valid record")


def test_help_has_examples() -> None:
    for command in ("verify", "tail"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.stdout and f"ratchet {command}" in result.stdout


# --- the real console script ----------------------------------------------------------


def test_console_script_verify_and_tail(home: Path) -> None:
    env = {**os.environ, "RATCHET_HOME": str(home)}
    out = subprocess.run([RATCHET, "verify"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.splitlines() == ["acme: ok (8 records)", "globex: ok (8 records)"]
    out = subprocess.run([RATCHET, "tail", "globex", "--json"], capture_output=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout == (home / "runs" / "globex.jsonl").read_bytes()
    out = subprocess.run([RATCHET, "tail", "missing"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("ratchet: error: no run 'missing'")
    assert "Traceback" not in out.stderr


APPENDER = """
import sys
from journal import FileStore, StepStarted, StepSucceeded, Transition
with FileStore(sys.argv[1]).writer("acme") as w:
    for i in range(int(sys.argv[2])):
        w.append(StepStarted(state="send", attempt=1, idempotency_key=f"acme/send/{i}"))
        w.append(StepSucceeded(state="send", attempt=1, trigger="ok", duration_ms=3.0))
        w.append(Transition(trigger="ok", source="send", dest="send"))
"""


class Lines:
    """Reads a process's stdout on a thread, so the test can wait for lines with a deadline."""

    def __init__(self, stream) -> None:
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self.queue.put(line)

    def take(self, count: int, timeout: float = 20.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < count:
            try:
                got.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"got {len(got)} of {count} lines before the deadline: {got}") from None
        return got


@pytest.mark.parametrize("as_json", [False, True], ids=["timeline", "json"])
def test_tail_follow_sees_records_appended_by_another_process_and_ctrl_c_exits_0(home: Path, as_json: bool) -> None:
    env = {**os.environ, "RATCHET_HOME": str(home)}
    args = [RATCHET, "tail", "acme", "-f"] + (["--json"] if as_json else [])
    tail = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        lines = Lines(tail.stdout)
        assert len(lines.take(8)) == 8  # what was there already
        appender = subprocess.run([sys.executable, "-c", APPENDER, str(home), "4"], capture_output=True, timeout=60)
        assert appender.returncode == 0, appender.stderr
        new = lines.take(12)  # 4 steps x 3 records, appended while tail was following
        if as_json:
            assert b"".join(new) == b"".join((home / "runs" / "acme.jsonl").read_bytes().splitlines(keepends=True)[8:])
        else:
            assert [line.split()[2] for line in new[-3:]] == [b"#18", b"#19", b"#20"]
            assert b"send  attempt 1" in new[0] and b"send \xe2\x86\x92 send  on ok" in new[2]
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=20) == 0
        assert tail.stderr.read() == b""  # quiet: no traceback, no "Aborted!"
    finally:
        if tail.poll() is None:
            os.kill(tail.pid, signal.SIGKILL)
            tail.wait()
        tail.stdout.close()
        tail.stderr.close()


FINISHER = """
import sys
from journal import FileStore, RunFinished, Transition
with FileStore(sys.argv[1]).writer("acme") as w:
    w.append_many([Transition(trigger="approve", source="review", dest="done"), RunFinished(state="done")])
"""


def test_tail_follow_exits_after_the_last_record_of_a_run_that_ends(home: Path) -> None:
    env = {**os.environ, "RATCHET_HOME": str(home)}
    tail = subprocess.Popen([RATCHET, "tail", "acme", "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        lines = Lines(tail.stdout)
        assert len(lines.take(8)) == 8  # still waiting: tail follows
        assert tail.poll() is None
        finisher = subprocess.run([sys.executable, "-c", FINISHER, str(home)], capture_output=True, timeout=60)
        assert finisher.returncode == 0, finisher.stderr
        assert [line.split()[3] for line in lines.take(2)] == [b"transition", b"run_finished"]
        assert tail.wait(timeout=20) == 0  # no Ctrl-C needed: the run has ended
        assert tail.stderr.read() == b""
    finally:
        if tail.poll() is None:
            os.kill(tail.pid, signal.SIGKILL)
            tail.wait()
        tail.stdout.close()
        tail.stderr.close()
    again = subprocess.run([RATCHET, "tail", "acme", "-f"], capture_output=True, env=env, timeout=20)
    assert again.returncode == 0 and len(again.stdout.splitlines()) == 10  # an ended run: printed, then done
