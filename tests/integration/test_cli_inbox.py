"""`ratchet send/approve/reject/resolve` write inbox files; `ratchet status` shows runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main

from supervisor_harness import Env, machine_folder, written_message


@pytest.fixture
def env(tmp_path: Path, tmp_path_factory):
    e = Env(tmp_path, machine_folder(tmp_path_factory))
    yield e
    e.cleanup()


def ratchet(env: Env, *args: str):
    return CliRunner().invoke(main, ["--home", str(env.home.root), *args], catch_exceptions=False)


def test_send_approve_reject_resolve_write_valid_messages(env):
    env.start("r1")
    m = written_message(env, ratchet(env, "send", "r1", "approve", "--by", "alice", "--data", "n=3", "--data", "who=x",
                             "--comment", "ok"))
    assert (m.run, m.trigger, m.by, m.data, m.comment) == ("r1", "approve", "alice", {"n": 3, "who": "x"}, "ok")
    assert written_message(env, ratchet(env, "approve", "r1", "--by", "bob")).trigger == "approve"
    assert written_message(env, ratchet(env, "reject", "r1", "--by", "bob")).trigger == "reject"
    m = written_message(env, ratchet(env, "approve", "r1", "--by", "bob", "--data", "seats=40", "--data", "note=ok"))
    assert (m.trigger, m.data) == ("approve", {"seats": 40, "note": "ok"})
    m = written_message(env, ratchet(env, "reject", "r1", "--by", "bob", "--data", "why=price"))
    assert (m.trigger, m.data) == ("reject", {"why": "price"})
    m = written_message(env, ratchet(env, "resolve", "r1", "skip", "approve", "--by", "ops"))
    assert (m.resolve, m.trigger) == ("skip", "approve")
    m = written_message(env, ratchet(env, "resolve", "r1", "abort", "--by", "ops"))
    assert (m.resolve, m.trigger) == ("abort", None)


@pytest.mark.parametrize("args, fragment", [
    (["approve", "nobody", "--by", "alice"], "no run 'nobody'"),
    (["approve", "../x", "--by", "alice"], "invalid"),
    (["send", "r1", "Bad-Trigger", "--by", "alice"], "trigger"),
    (["approve", "r1", "--by", "a b"], "by"),
    (["approve", "r1", "--by", "alice", "--data", "seats"], "--data 'seats': expected KEY=VALUE"),
    (["reject", "r1", "--by", "alice", "--data", "=x"], "--data '=x': expected KEY=VALUE"),
    (["resolve", "r1", "skip", "--by", "ops"], "needs the TRIGGER"),
    (["resolve", "r1", "retry", "ok", "--by", "ops"], "takes no TRIGGER"),
])
def test_bad_input_is_one_line_and_exit_1(env, args, fragment):
    env.start("r1")
    result = CliRunner().invoke(main, ["--home", str(env.home.root), *args])
    assert result.exit_code == 1, result.output
    assert fragment in result.output and len(result.output.strip().splitlines()) == 1
    assert [p for p in env.home.inbox.iterdir() if p.is_file()] == []


def test_status_table_and_json(env):
    env.start("r1")
    env.start("r2")
    assert env.once().returncode == 0
    table = ratchet(env, "status")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["RUN", "MACHINE", "STATE", "STATUS"]
    assert "approve|reject by alice" in lines[1]
    rows = json.loads(ratchet(env, "status", "--json").output)
    assert [(r["run_id"], r["state"], r["status"], r["waiting_on"], r["approvers"]) for r in rows] == [
        ("r1", "review", "waiting", ["approve", "reject"], ["alice"]),
        ("r2", "review", "waiting", ["approve", "reject"], ["alice"]),
    ]
    assert rows[0]["deadline"].startswith("2026-01-06T09:00:00")
    one = json.loads(ratchet(env, "status", "r2", "--json").output)
    assert [r["run_id"] for r in one] == ["r2"]
    assert json.loads(ratchet(env, "status", "--json", "--state", "done").output) == []
    missing = CliRunner().invoke(main, ["--home", str(env.home.root), "status", "nope"])
    assert missing.exit_code == 1 and "no run 'nope'" in missing.output
