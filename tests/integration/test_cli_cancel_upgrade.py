"""`ratchet cancel` and `ratchet upgrade`: the inbox files they write, what they refuse at
once, and a whole upgrade through a real `ratchet supervise --once`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.definition.loader import load_file
from engine.supervise.message import parse_message

from supervisor_harness import MACHINE, Env, machine_folder, written_message

# approval v2: carol may approve too, and the review lasts two days.
V2 = MACHINE.replace("version: 1", "version: 2").replace(
    "review: {approvers: [alice], timeout: 1d}", "review: {approvers: [alice, carol], timeout: 2d}")
# Everything wrong at once: the same version, `review` a task now, and another name is not
# even needed to make three reasons.
BAD = MACHINE.replace("review: {approvers: [alice], timeout: 1d}", "review: {action: sup_acts:work}")


@pytest.fixture
def env(tmp_path: Path, tmp_path_factory):
    folder = machine_folder(tmp_path_factory)
    # Beside the test machine: the new versions' actions resolve in the same folder.
    (folder / "approval_v2.yaml").write_text(V2)
    (folder / "approval_bad.yaml").write_text(BAD)
    (folder / "other.yaml").write_text(V2.replace("name: approval", "name: other"))
    e = Env(tmp_path, folder)
    yield e
    e.cleanup()


def ratchet(env: Env, *args: str):
    """`ratchet ARGS` in this process, on the home's file clock."""
    return CliRunner().invoke(main, ["--home", str(env.home.root), *args],
                              env={"RATCHET_CLOCK_FILE": str(env.clock.path)})


def inbox_files(env: Env) -> list[Path]:
    return [p for p in env.home.inbox.iterdir() if p.is_file()]


def test_cancel_writes_a_cancel_message(env):
    env.start("r1")
    m = written_message(env, ratchet(env, "cancel", "r1", "--by", "ops", "--reason", "customer left"))
    assert (m.run, m.cancel, m.by, m.reason, m.trigger, m.resolve) == ("r1", True, "ops", "customer left", None, None)


def test_cancel_fails_fast_on_an_unknown_or_ended_run(env):
    missing = ratchet(env, "cancel", "nobody", "--by", "ops")
    assert missing.exit_code == 1 and "no run 'nobody'" in missing.output
    env.start("r1")
    assert env.once().returncode == 0
    assert written_message(env, ratchet(env, "cancel", "r1", "--by", "ops")).cancel
    ended = env.once()
    assert ended.returncode == 0 and env.row("r1").status == "cancelled"
    again = ratchet(env, "cancel", "r1", "--by", "ops")
    assert again.exit_code == 1 and len(again.output.splitlines()) == 1
    assert "run 'r1' is cancelled (in 'review'); it takes no more messages" in again.output
    assert inbox_files(env) == []


def test_upgrade_refused_lists_every_reason_one_per_line_and_writes_nothing(env):
    env.start("r1")
    assert env.once().returncode == 0
    before = env.home.store.path("r1").read_bytes()
    result = env.cli("upgrade", "r1", str(env.machine.with_name("approval_bad.yaml")), "--by", "ops")
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1 and result.stdout == b""
    assert lines == [
        "ratchet: error: run 'r1' cannot move to approval v1: the run follows version 1 already, with another "
        "definition; give the new definition a new version",
        "ratchet: error: run 'r1' cannot move to approval v1: state 'review', where the run is, is a waiting "
        "state in the run's definition but a task state in the new definition",
    ]
    other = ratchet(env, "upgrade", "r1", str(env.machine.with_name("other.yaml")), "--by", "ops")
    assert other.exit_code == 1 and "the new definition is machine 'other', the run follows 'approval'" in other.output
    broken = env.dir / "broken.yaml"
    broken.write_text(V2.replace("dest: send", "dest: sned"))
    invalid = ratchet(env, "upgrade", "r1", str(broken), "--by", "ops")
    assert invalid.exit_code == 1 and "unknown state 'sned'" in invalid.output
    assert len(invalid.output.splitlines()) == 1
    assert inbox_files(env) == [] and env.home.store.path("r1").read_bytes() == before


def test_upgrade_accepted_moves_the_run_to_v2_under_the_supervisor(env):
    env.start("r1")
    assert env.once().returncode == 0
    v2 = env.machine.with_name("approval_v2.yaml")
    result = ratchet(env, "upgrade", "r1", str(v2), "--by", "ops", "--comment", "carol helps")
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    m = parse_message(path.read_bytes(), path.suffix)  # read in place: the supervisor takes it next
    assert m.upgrade.source == str(v2.resolve()) and m.upgrade.definition["version"] == 2
    assert (m.by, m.comment, m.upgrade.definition_hash) == ("ops", "carol helps", load_file(v2).hash)
    assert env.once().returncode == 0
    assert (env.home.inbox_done / path.name).exists()

    rows = json.loads(ratchet(env, "status", "r1", "--json").stdout)
    assert (rows[0]["version"], rows[0]["status"], rows[0]["approvers"]) == (2, "waiting", ["alice", "carol"])
    assert rows[0]["deadline"].startswith("2026-01-07T09:00:00")  # 2 days from when review was entered
    tail = ratchet(env, "tail", "r1").stdout
    assert "upgraded         v2 sha256:" in tail and "by ops [unverified]  “carol helps”" in tail  # an open home
    graph = ratchet(env, "graph", str(v2), "--run", "r1").stdout
    assert "%% approval v2" in graph and "approvers alice carol" in graph and "class review current" in graph
    assert "has changed since" not in graph  # the run follows exactly this file now

    env.send("r1", "approve", by="carol")
    assert env.once().returncode == 0
    assert env.row("r1").status == "finished"
    assert ratchet(env, "verify", "r1").exit_code == 0
