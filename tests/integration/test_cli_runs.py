"""`ratchet start` and `ratchet run` as real subprocesses (the console script)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")
RENEWAL = str(ROOT / "machines" / "renewal_review.yaml")


@pytest.fixture
def env(tmp_path: Path) -> dict:
    (tmp_path / "clock").write_text("2026-11-27T09:41:00Z")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return clean | {"RATCHET_HOME": str(tmp_path / "home"), "RATCHET_CLOCK_FILE": str(tmp_path / "clock"),
                    "RATCHET_LEDGER": str(tmp_path / "ledger.jsonl")}


def ratchet(env: dict, *args: str, cwd: Path = ROOT, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([RATCHET, *args], env=env | extra, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_start_prints_the_id_and_is_idempotent_on_id(env):
    first = ratchet(env, "start", "renewal_review", "--id", "acme-2026", "--input", "customer=acme")
    again = ratchet(env, "start", "renewal_review", "--id", "acme-2026")
    assert first.returncode == again.returncode == 0, first.stderr
    assert first.stdout.strip() == again.stdout.strip() == "acme-2026"
    journal = Path(env["RATCHET_HOME"]) / "runs" / "acme-2026.jsonl"
    assert len(journal.read_text().splitlines()) == 1


def test_starting_an_existing_id_with_other_input_keeps_the_first_and_says_so(env):
    ratchet(env, "start", "renewal_review", "--id", "acme-2026", "--input", "customer=acme")
    again = ratchet(env, "start", "renewal_review", "--id", "acme-2026", "--input", "customer=beta")
    assert again.returncode == 0 and again.stdout.strip() == "acme-2026"
    assert 'its input stays {"customer": "acme"}' in again.stderr


def test_start_without_id_prints_a_new_ulid(env):
    out = ratchet(env, "start", RENEWAL)
    assert out.returncode == 0 and len(out.stdout.strip()) == 26


def test_run_prints_each_record_and_a_summary(env):
    out = ratchet(env, "run", "renewal_review", "--input", "customer=acme", "--input", "seats=40", "--id", "r1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[3] for line in lines[:-1]] == [
        "run_started", "step_started", "step_succeeded", "transition", "waiting", "sealed"]
    assert '"seats":40' in lines[0]  # JSON values are parsed
    assert lines[-1] == ("run r1: waiting in 'review' for approve|revise|reject from alice, bob "
                         "until 2026-11-29 09:41:00Z")


def test_run_refuses_bad_input_in_one_line(env):
    out = ratchet(env, "run", "renewal_review", "--input", "novalue")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "KEY=VALUE" in out.stderr
    out = ratchet(env, "run", "renewall")
    assert out.returncode == 1 and "did you mean 'renewal_review'" in out.stderr


def test_run_killed_mid_action_continues_with_the_same_id(env):
    killed = ratchet(env, "run", "renewal_review", "--id", "r1", RATCHET_CRASH_AT="after_action:1")
    assert killed.returncode == -signal.SIGKILL
    again = ratchet(env, "run", "renewal_review", "--id", "r1")
    assert again.returncode == 0, again.stderr
    assert "step_abandoned" in again.stdout and again.stdout.splitlines()[-1].startswith("run r1: waiting in 'review'")
    ledger = [json.loads(line) for line in Path(env["RATCHET_LEDGER"]).read_text().splitlines()]
    assert [e["effect"] for e in ledger] == [True, False]  # called twice, one effect (same key)
    assert {e["idempotency_key"] for e in ledger} == {"r1/draft/1"}


def test_a_locked_run_is_refused_naming_it(env, tmp_path):
    assert ratchet(env, "start", "renewal_review", "--id", "r1").returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from journal import FileStore; "
         f"w = FileStore({str(Path(env['RATCHET_HOME']))!r}).writer('r1'); print('locked', flush=True); "
         "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = ratchet(env, "run", "renewal_review", "--id", "r1")
        assert out.returncode == 1 and "run 'r1' is already being advanced by another process" in out.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
