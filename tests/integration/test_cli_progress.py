"""Long commands show progress on a terminal and stay quiet when piped: `ratchet verify` and
`ratchet archive` as real processes, their stderr a pseudo-terminal (pty) or a pipe."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

RATCHET = str(Path(sys.executable).parent / "ratchet")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
# A fixed set (the counts below depend on it), not every fixture: later fixtures join the folder.
SIXTEEN = [
    "invoice_declined",
    "invoice_nothing_due",
    "invoice_paid_after_a_retry",
    "invoice_retry_due",
    "onboarding_escalated",
    "onboarding_no_reply_closed",
    "onboarding_reply_after_a_reminder",
    "onboarding_retried_then_declined",
    "renewal_approved",
    "renewal_cancelled_mid_send",
    "renewal_crashes_resumed",
    "renewal_cut_off_mid_draft",
    "renewal_revised_then_rejected",
    "renewal_timeout_aborted",
    "renewal_upgraded_then_cancelled",
    "renewal_waiting_for_approval",
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A home holding the fixture journals (16 runs: 6 ended before the clock's cutoff)."""
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True)
    for fixture in (FIXTURES / f"{name}.jsonl" for name in SIXTEEN):
        run_id = json.loads(fixture.read_bytes().split(b"\n")[0])["run_id"]
        shutil.copy(fixture, runs / f"{run_id}.jsonl")
    (tmp_path / "clock").write_text("2026-12-28T09:00:00Z")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET")}
    return {**clean, "RATCHET_HOME": str(tmp_path / "home"), "RATCHET_CLOCK_FILE": str(tmp_path / "clock")}


def on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run `ratchet ARGS` with stderr on a pseudo-terminal: exit code, stdout, what the terminal got."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([RATCHET, *args], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen, deadline = b"", time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal closed it (the command ended)
                break
            if not data:
                break
            seen += data
        out = proc.stdout.read()
        proc.wait(60)
    finally:
        os.close(master)
        proc.stdout.close()
    return proc.returncode, out.decode(), seen.decode()


def piped(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([RATCHET, *args], capture_output=True, text=True, env=env, timeout=60)


def test_verify_draws_progress_on_a_terminal_and_clears_it(env):
    code, out, terminal = on_a_terminal(["verify"], env)
    assert code == 0, terminal
    assert len(out.splitlines()) == 16 and all(": ok (" in line for line in out.splitlines())
    assert "verify: 1/16 (6%) " in terminal  # the first journal, drawn at once
    assert "verify: 16/16 (100%) " in terminal  # the last, always drawn
    assert terminal.endswith("\r\x1b[K")  # and the line cleared at the end: nothing left behind


def test_verify_piped_prints_no_progress(env):
    result = piped(["verify"], env)
    assert result.returncode == 0
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 16


def test_archive_draws_progress_on_a_terminal_then_its_summary(env):
    code, out, terminal = on_a_terminal(["archive", "--finished-before", "30d"], env)
    assert code == 0, terminal
    assert len([line for line in out.splitlines() if ": archived (" in line]) == 6
    assert "archive: 16/16 (100%) " in terminal
    cleared, summary = terminal.rsplit("\r\x1b[K", 1)
    assert summary.startswith("archived 6 runs; left in runs/: 4 not ended, 6 ended since"), terminal
    assert "archive: 1/16" in cleared


def test_archive_piped_prints_only_its_summary(env):
    result = piped(["archive", "--finished-before", "30d", "--dry-run"], env)
    assert result.returncode == 0
    assert result.stderr.startswith("would archive 6 runs;") and len(result.stderr.splitlines()) == 1
    assert "\x1b" not in result.stderr + result.stdout


def test_import_draws_progress_on_a_terminal_and_clears_it(env, tmp_path):
    files = sorted(str(p) for p in (Path(env["RATCHET_HOME"]) / "runs").glob("*.jsonl"))
    into = {**env, "RATCHET_HOME": str(tmp_path / "other")}
    (tmp_path / "other").mkdir()
    code, out, terminal = on_a_terminal(["import", *files], into)
    assert code == 0, terminal
    assert len(out.splitlines()) == 16 and all(line.startswith(files[0].rsplit("/", 1)[0]) for line in out.splitlines())
    assert "import: 16/16 (100%) " in terminal and terminal.endswith("\r\x1b[K")
    again = piped(["import", *files], into)  # piped: the same lines, no progress (and each a no-op now)
    assert again.returncode == 0 and again.stderr == "" and len(again.stdout.splitlines()) == 16
