"""Every command on the PostgreSQL store, as real subprocesses (the console script).

RATCHET_STORE points at a fresh schema of the session's private server (tests/pg_cluster.py);
the home folder keeps only the inbox. Time is the file clock (RATCHET_CLOCK_FILE).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from journal import open_store

from pg_cluster import share_home_key

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")



@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    (tmp_path / "clock").write_text("2026-11-27T09:41:00Z")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return clean | {"RATCHET_HOME": str(tmp_path / "home"), "RATCHET_CLOCK_FILE": str(tmp_path / "clock"),
                    "RATCHET_LEDGER": str(tmp_path / "ledger.jsonl"), "RATCHET_STORE": pg_url}


def ratchet(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RATCHET, *args], env=env | extra, cwd=ROOT, capture_output=True, text=True, timeout=120)


def ok(env: dict[str, str], *args: str, **extra: str) -> str:
    out = ratchet(env, *args, **extra)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def set_clock(env: dict[str, str], moment: str) -> None:
    Path(env["RATCHET_CLOCK_FILE"]).write_text(moment)


def status(env: dict[str, str], run_id: str) -> dict:
    rows = json.loads(ok(env, "status", run_id, "--json"))
    return rows[0] if isinstance(rows, list) else rows


def no_journal_files(env: dict[str, str]) -> bool:
    runs = Path(env["RATCHET_HOME"]) / "runs"
    return not runs.exists() or not any(runs.iterdir())


@pytest.mark.slow  # a dozen subprocesses
def test_run_approve_supervise_status_tail_verify_export_archive(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "db", "init")
    out = ok(env, "run", "renewal_review", "--input", "customer=acme", "--id", "r1")
    assert out.splitlines()[-1].startswith("run r1: waiting in 'review'")
    assert status(env, "r1")["state"] == "review"
    posted = ok(env, "approve", "r1", "--by", "alice").strip()  # an open home: a row of the messages table
    assert "/messages/" in posted and not list((Path(env["RATCHET_HOME"]) / "inbox").glob("*.json"))
    ok(env, "supervise", "--once")
    assert (status(env, "r1")["state"], status(env, "r1")["status"]) == ("sent", "finished")
    assert "r1: ok (13 records; sealed through line 12)" in ok(env, "verify")
    timeline = ok(env, "tail", "r1").splitlines()
    assert len(timeline) == 13 and "run_finished" in timeline[-2] and "sealed" in timeline[-1]
    exported = tmp_path / "r1.jsonl"
    exported.write_bytes(subprocess.run([RATCHET, "export", "r1"], env=env, cwd=ROOT, capture_output=True,
                                        timeout=60, check=True).stdout)
    lines = exported.read_bytes().splitlines()
    assert ok(env, "tail", "r1", "--json").encode().splitlines() == lines  # tail --json: the same bytes
    assert f"{exported}: ok (13 records)" in ok(env, "verify", str(exported))
    assert f"{exported}: ok (13 records)" in ok(env, "verify", str(exported), RATCHET_STORE="file:")
    for n in range(1, len(lines)):  # FORMAT.md's recipe: sed -n Np F | tr -d '\n' | sha256sum
        link = subprocess.run(f"sed -n {n}p {exported} | tr -d '\\n' | sha256sum | cut -d' ' -f1", shell=True,
                              capture_output=True, text=True, check=True).stdout.strip()
        assert link == json.loads(lines[n])["prev"]
    assert no_journal_files(env)

    set_clock(env, "2026-12-30T09:41:00Z")
    assert "archived 1 runs" in ratchet(env, "archive", "--finished-before", "7d").stderr
    assert json.loads(ok(env, "status", "--json") or "[]") == []
    assert "r1 (archived): ok (13 records; sealed through line 12)" in ok(env, "verify", "--all")
    archived = subprocess.run([RATCHET, "export", "r1"], env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert archived.returncode == 0 and archived.stdout == exported.read_bytes()
    refused = ratchet(env, "approve", "r1", "--by", "alice")
    assert refused.returncode == 1 and "archived" in refused.stderr
    again = ratchet(env, "start", "renewal_review", "--id", "r1")
    assert again.returncode == 1 and "archived" in again.stderr


@pytest.mark.slow  # a dozen subprocesses
def test_start_send_reject_cancel_and_tail_follow(env: dict[str, str]) -> None:
    assert ok(env, "start", "renewal_review", "--id", "r2", "--input", "customer=b").strip() == "r2"
    assert ok(env, "start", "renewal_review", "--id", "r3", "--input", "customer=c").strip() == "r3"
    ok(env, "supervise", "--once")
    assert status(env, "r2")["state"] == status(env, "r3")["state"] == "review"
    follower = subprocess.Popen([RATCHET, "tail", "-f", "r2"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        ok(env, "send", "r2", "reject", "--by", "bob", "--comment", "too expensive")
        ok(env, "cancel", "r3", "--by", "ops")
        ok(env, "supervise", "--once")
        out, err = follower.communicate(timeout=60)  # -f ends once the run has ended
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate(timeout=10)
    assert follower.returncode == 0, err
    assert "run_finished" in out.splitlines()[-2] and "sealed" in out.splitlines()[-1] and "trigger_received" in out
    assert (status(env, "r2")["state"], status(env, "r2")["status"]) == ("rejected", "finished")
    assert status(env, "r3")["status"] == "cancelled"
    assert no_journal_files(env)


@pytest.mark.slow  # a dozen subprocesses
def test_an_escalated_run_is_resolved(env: dict[str, str]) -> None:
    ok(env, "run", "renewal_review", "--id", "r4")
    set_clock(env, "2026-12-01T09:41:00Z")  # past the review's 2-day timeout: it escalates
    ok(env, "supervise", "--once")
    escalated = status(env, "r4")
    assert escalated["escalation"], escalated
    store = open_store(env["RATCHET_STORE"])
    try:
        ticket = store.fetch("escalations", "r4.json")  # the ticket is a row...
        assert ticket is not None
        copy = Path(env["RATCHET_HOME"]) / "escalations" / "r4.json"
        assert copy.read_bytes() == ticket  # ...and a file on the host that escalated
        # resolved on another host: its supervisor journals it and withdraws the row...
        other = env | {"RATCHET_HOME": str(Path(env["RATCHET_HOME"]).parent / "home-b")}
        share_home_key(Path(env["RATCHET_HOME"]), Path(other["RATCHET_HOME"]))
        ok(other, "resolve", "r4", "skip", "approve", "--by", "alice")  # skip approve: an approver's
        ok(other, "supervise", "--once")
        assert store.fetch("escalations", "r4.json") is None and copy.exists()
        ok(env, "supervise", "--once")  # ...and the host that escalated removes its copy when it next looks
        assert not copy.exists()
    finally:
        store.close()  # type: ignore[attr-defined]
    assert (status(env, "r4")["state"], status(env, "r4")["status"]) == ("sent", "finished")


@pytest.mark.slow  # a dozen subprocesses
def test_file_journals_are_imported_verified_and_exported_byte_for_byte(env: dict[str, str], tmp_path: Path) -> None:
    file_env = env | {"RATCHET_STORE": "file:", "RATCHET_HOME": str(tmp_path / "old-home")}
    ok(file_env, "run", "renewal_review", "--id", "old1")
    ok(file_env, "run", "renewal_review", "--id", "old2")
    journals = sorted((tmp_path / "old-home" / "runs").glob("*.jsonl"))
    out = ok(env, "import", *map(str, journals))
    assert out.count("imported run") == 2
    assert "already in" in ok(env, "import", str(journals[0]))  # again: a no-op
    for journal in journals:
        exported = subprocess.run([RATCHET, "export", journal.stem], env=env, cwd=ROOT, capture_output=True,
                                  timeout=60, check=True).stdout
        assert exported == journal.read_bytes()
        assert hashlib.sha256(exported).digest() == hashlib.sha256(journal.read_bytes()).digest()
    assert status(env, "old1")["state"] == "review"
    ok(env, "approve", "old1", "--by", "alice")  # the imported run goes on in PostgreSQL
    ok(env, "supervise", "--once")
    assert status(env, "old1")["status"] == "finished"

    ok(file_env, "run", "renewal_review", "--id", "old3")
    tampered = tmp_path / "tampered.jsonl"  # a run not imported yet, one line edited
    lines = (tmp_path / "old-home" / "runs" / "old3.jsonl").read_bytes().splitlines(keepends=True)
    tampered.write_bytes(b"".join([lines[0], lines[1].replace(b'"attempt":1', b'"attempt":2'), *lines[2:]]))
    refused = ratchet(env, "import", str(tampered))
    assert refused.returncode == 1 and "tampered.jsonl:3: hash chain broken" in refused.stderr
    assert "nothing imported" in refused.stderr
    assert ratchet(env, "status", "old3").returncode == 1  # not in the store


@pytest.mark.slow  # a dozen subprocesses
def test_db_init_creates_then_finds_the_schema_up_to_date(env: dict[str, str]) -> None:
    assert "(created)" in ok(env, "db", "init")
    assert "(up to date)" in ok(env, "db", "init")
    bad = ratchet(env, "status", RATCHET_STORE="postgresql://nobody@/x?host=/nonexistent&port=1")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "cannot connect" in bad.stderr
    file_store = ratchet(env, "db", "init", RATCHET_STORE="file:")
    assert file_store.returncode == 1 and "no tables" in file_store.stderr


@pytest.mark.slow  # a dozen subprocesses
def test_the_store_option_after_a_command_and_in_front_of_it(env: dict[str, str], pg_url: str) -> None:
    bare = {k: v for k, v in env.items() if k != "RATCHET_STORE"}
    ok(bare, "--store", pg_url, "run", "renewal_review", "--id", "r5")
    assert "r5" in ok(bare, "status", "--store", pg_url)
    assert "r5" not in ratchet(bare, "status").stdout + ratchet(bare, "status").stderr  # the file store has none


@pytest.mark.parametrize("command", [["export"], ["import"], ["db"], ["db", "init"]])
def test_the_store_commands_have_a_summary_an_example_and_the_home_and_store_options(command: list[str]) -> None:
    from click.testing import CliRunner

    from engine.cli import main

    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    summary = result.stdout.split("\n\n")[1].strip()
    assert summary.endswith(".") and "\n" not in summary
    assert "\n  Example:\n    ratchet " in result.stdout
    if command != ["db", "init"]:  # a group's subcommand takes the group's options
        assert "--home" in result.stdout and "--store" in result.stdout
