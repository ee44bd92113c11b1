"""Fan-out under a real `ratchet supervise`: a parent's children run in its workers, the
supervisor is killed (-9, its workers with it) while children are mid-step, and a new
one finishes the job: for `all`, `any` and a quorum, exactly the spawned children exist,
each child's effect happened once (the ledger, by idempotency key), the join fired once,
and the children an early join no longer needs were cancelled (their workers killed)."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

import engine
from engine.errors import WaitTimeoutError

from supervisor_harness import Env
from waiting import wait_for

CHILD = """
name: gated_child
version: 1
initial: prepare
states:
  prepare: {action: sup_acts:work}
  done: {final: true, outcome: reviewed}
transitions:
  - {trigger: ok, source: prepare, dest: done}
"""

PARENT = """
name: fanout_NAME
version: 1
initial: fan
states:
  fan:
    spawn: {machine: gated_child, for_each: items, join: JOIN}
    timeout: 1d
  joined: {final: true, outcome: joined}
  failed: {final: true, outcome: failed}
  late: {final: true, outcome: late}
transitions:
  - {trigger: joined, source: fan, dest: joined}
  - {trigger: failed, source: fan, dest: failed}
  - {trigger: timeout, source: fan, dest: late}
"""

JOINS = {"all": ("all", 4), "any": ("any", 1), "quorum": ("{quorum: 2}", 2)}  # name: (join, gates opened)


@pytest.fixture
def fan_env(env: Env, machine_dir: Path) -> Env:
    (machine_dir / "gated_child.yaml").write_text(CHILD)
    for name, (join, _) in JOINS.items():
        (machine_dir / f"fanout_{name}.yaml").write_text(PARENT.replace("NAME", name).replace("JOIN", join))
    return env


def children(env: Env) -> list[str]:
    return sorted(i for i in env.home.store.run_ids() if i.startswith("fan."))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(JOINS))
def test_supervisor_killed_while_children_run_then_the_join_fires_once(fan_env: Env, name: str):
    env = fan_env
    join, opened = JOINS[name]
    gates = [env.dir / f"gate{i}" for i in range(4)]
    env.start("fan", machine=f"fanout_{name}", items=[{"gate": str(g)} for g in gates])
    # Children blocked in their step hold their worker (a step with no timeout): 4 workers
    # for them, one left for the parent's join.
    first = env.supervise("--workers", "5")
    # Two children or more mid-step, blocked after their effect.
    wait_for(lambda: sum(env.started_marker(f"fan.fan.{i}").exists() for i in range(4)) >= 2,
             what="two children mid-step")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = env.supervise("--workers", "5")
    for gate in gates[:opened]:
        gate.touch()
    parent = env.wait_status("fan", "finished", "joined", timeout=30)
    assert parent.outcome == "joined"

    ids = [f"fan.fan.{i}" for i in range(4)]
    assert children(env) == ids  # exactly the spawned children, no more
    records = env.records("fan")
    assert [r["trigger"] for r in records if r["type"] == "transition"] == ["joined"]  # the join fired once
    ends = [r["child"] for r in records if r["type"] == "child_finished"]
    assert len(ends) == len(set(ends)) >= opened
    if name != "all":  # the rest are no longer needed: cancelled, their blocked step cut off
        for child in ids[opened:]:
            if child not in ends:
                env.wait_status(child, "cancelled", timeout=30)
    effects = Counter(e["key"] for e in env.ledger_lines() if e["effect"])
    assert all(count == 1 for count in effects.values()), effects
    assert {f"{c}/prepare/1" for c in ids[:opened]} <= set(effects)
    for child in ids:
        assert env.records(child)[0]["parent"] == "fan"
    second.send_signal(signal.SIGTERM)
    second.wait(20)


def test_status_tree_graph_and_tail_show_the_family(fan_env: Env):
    env = fan_env
    gates = [env.dir / f"gate{i}" for i in range(3)]
    env.start("fan", machine="fanout_all", items=[{"gate": str(g)} for g in gates])
    gates[1].touch()
    gates[2].touch()
    supervisor = env.supervise()
    wait_for(lambda: sum(r["type"] == "child_finished" for r in env.records("fan")) == 2,
             what="two children's ends journaled in the parent")  # child 0 is blocked in its step
    tree = env.cli("status", "--tree").stdout.decode().splitlines()
    assert tree[1].startswith("fan ") and "children: 2/3 finished, 1 live" in tree[1]
    assert [line.split()[:2] for line in tree[2:]] == [["└", "fan.fan.0"], ["└", "fan.fan.1"], ["└", "fan.fan.2"]]
    tail = env.cli("tail", "fan").stdout.decode()
    assert "spawned          fan  started fan.fan.0, fan.fan.1, fan.fan.2 (3 of 3)" in tail
    assert "child_finished   fan  fan.fan.1 finished → reviewed" in tail
    rows = json.loads(env.cli("status", "fan", "--json").stdout)
    assert rows[0]["children"] == "2/3 finished, 1 live"
    graph = env.cli("graph", "--run", "fan").stdout.decode()
    assert "state fan__fork <<fork>>" in graph and "fan__join --> joined: joined" in graph
    gates[0].touch()
    env.wait_status("fan", "finished", "joined")
    supervisor.send_signal(signal.SIGTERM)
    supervisor.wait(20)


@pytest.mark.slow
def test_cancelling_the_parent_cancels_its_live_children(fan_env: Env):
    env = fan_env
    gates = [env.dir / f"gate{i}" for i in range(3)]
    env.start("fan", machine="fanout_all", items=[{"gate": str(g)} for g in gates])
    gates[2].touch()  # one child ends; two stay blocked mid-step
    supervisor = env.supervise("--workers", "3")
    wait_for(lambda: sum(r["type"] == "child_finished" for r in env.records("fan")) == 1
             and all(env.started_marker(f"fan.fan.{i}").exists() for i in (0, 1)),
             what="one child ended, two mid-step")
    assert env.cli("cancel", "fan", "--by", "ops", "--reason", "deal lost").returncode == 0
    env.wait_status("fan", "cancelled")
    for child in ("fan.fan.0", "fan.fan.1"):  # their workers killed, their steps cut off
        env.wait_status(child, "cancelled")
        cancelled = next(r for r in env.records(child) if r["type"] == "cancelled")
        assert cancelled["by"] == "ratchet" and cancelled["reason"] == "its parent fan was cancelled"
        assert cancelled["cut_step"]["state"] == "prepare"
    assert env.row("fan.fan.2").status == "finished"  # ended before: left as it is
    effects = Counter(e["key"] for e in env.ledger_lines() if e["effect"])
    assert all(count == 1 for count in effects.values()) and len(effects) == 3
    supervisor.send_signal(signal.SIGTERM)
    supervisor.wait(20)


STUCK = """
name: stuck_child
version: 1
initial: wait_for_data
states:
  wait_for_data: {timeout: 1h}
  done: {final: true}
transitions:
  - {trigger: data, source: wait_for_data, dest: done}
"""


def test_escalated_children_fail_makes_the_supervisor_fail_the_join(fan_env: Env, machine_dir: Path):
    env = fan_env
    (machine_dir / "stuck_child.yaml").write_text(STUCK)
    (machine_dir / "fanout_escfail.yaml").write_text(
        PARENT.replace("NAME", "escfail").replace("machine: gated_child", "machine: stuck_child")
        .replace("join: JOIN", "join: all, escalated_children: fail"))
    env.start("fan", machine="fanout_escfail", items=[1, 2])
    supervisor = env.supervise()
    for child in ("fan.fan.0", "fan.fan.1"):  # a file that comes before a child's wait opens is stale
        env.wait_status(child, "waiting")
    env.send("fan.fan.0", "data")  # one child ends well; the other's wait will expire
    env.wait_status("fan.fan.0", "finished")
    env.clock.set(env.clock.now() + timedelta(hours=2))
    env.wait_status("fan", "finished", "failed", timeout=30)
    ends = {r["child"]: r["status"] for r in env.records("fan") if r["type"] == "child_finished"}
    assert ends == {"fan.fan.0": "finished", "fan.fan.1": "escalated"}
    assert env.row("fan.fan.1").status == "escalated"  # still the person's to resolve
    assert engine.Ratchet(home=env.home.root).get("fan").children_escalated == ()  # it ended for its parent
    supervisor.send_signal(signal.SIGTERM)
    supervisor.wait(20)


def test_validate_reports_spawn_mistakes_each_on_its_line(env: Env):
    broken = Path(__file__).resolve().parents[1] / "unit" / "definitions" / "broken"
    result = env.cli("validate", str(broken / "spawn_mistakes.yaml"), str(broken / "spawn_unknown_machine.yaml"))
    assert result.returncode == 1
    errors = [line for line in result.stdout.decode().splitlines() + result.stderr.decode().splitlines()
              if ": warning: " not in line and line.strip()]
    assert f"{broken / 'spawn_mistakes.yaml'}:19: states.badjoin.spawn.join: invalid join 'most': write all, any or " \
           "{quorum: N}" in errors
    assert any(line.startswith(f"{broken / 'spawn_unknown_machine.yaml'}:12: states.fan.spawn.machine: spawn machine "
                               "'clause_reveiw': no machine named") for line in errors)


def test_the_api_waits_on_a_parent_until_its_join_not_while_it_waits_for_its_children(fan_env: Env):
    """`Ratchet.wait(parent)` (until "settled": waiting for someone, escalated or ended) must
    not return while the parent only waits for its own children: nobody outside is asked."""
    env = fan_env
    ratchet = engine.Ratchet(home=env.home.root, machines_dir=env.machine.parent, clock=env.clock)
    gates = [env.dir / f"gate{i}" for i in range(2)]
    env.start("fan", machine="fanout_all", items=[{"gate": str(g)} for g in gates])
    supervisor = env.supervise("--workers", "3")
    wait_for(lambda: all(env.started_marker(f"fan.fan.{i}").exists() for i in range(2)), what="both children mid-step")
    waiting = ratchet.get("fan")  # for its children, both blocked in their step
    assert (waiting.status, waiting.waiting_on, waiting.children) == ("waiting", (), "0/2 finished, 2 live")
    children = [(r.id, r.parent) for r in ratchet.list(machine="gated_child")]
    assert children == [("fan.fan.0", "fan"), ("fan.fan.1", "fan")]
    with pytest.raises(WaitTimeoutError):
        ratchet.wait("fan", timeout=1.0)
    assert ratchet.wait("fan", until="waiting", timeout=5).state == "fan"  # asked for by name: still there
    for gate in gates:
        gate.touch()
    joined = ratchet.wait("fan", timeout=30)
    assert (joined.status, joined.state) == ("finished", "joined")
    supervisor.send_signal(signal.SIGTERM)
    supervisor.wait(20)


def test_archive_keeps_a_child_whose_end_its_parent_has_not_journaled(fan_env: Env, machine_dir: Path):
    """Children that ended while no supervisor ran (driven by `ratchet run`) are read by
    their parent at its next session: archiving them first would leave the parent waiting
    for ever (it reads the child's journal, which has left runs/)."""
    env = fan_env
    gates = [env.dir / f"gate{i}" for i in range(2)]
    for gate in gates:
        gate.touch()
    env.start("fan", machine="fanout_all", items=[{"gate": str(g)} for g in gates])
    assert env.cli("run", str(machine_dir / "fanout_all.yaml"), "--id", "fan").returncode == 0  # spawns, waits
    for child in ("fan.fan.0", "fan.fan.1"):
        assert env.cli("run", str(machine_dir / "gated_child.yaml"), "--id", child).returncode == 0
        assert env.row(child).status == "finished"
    assert env.row("fan").status == "waiting"  # nobody told it yet
    env.clock.set(env.clock.now() + timedelta(hours=2))  # the parent's own timeout is 1d
    kept = env.cli("archive", "--finished-before", "1h")
    assert kept.returncode == 0, kept.stderr
    assert "fan.fan.0: not archived yet: its parent fan has not journaled its end" in kept.stdout.decode()
    assert sorted(env.home.store.run_ids()) == ["fan", "fan.fan.0", "fan.fan.1"]
    env.once()
    assert (env.row("fan").status, env.row("fan").state) == ("finished", "joined")
    env.clock.set(env.clock.now() + timedelta(hours=2))
    assert env.cli("archive", "--finished-before", "1h").returncode == 0
    assert env.home.store.run_ids() == [] and sorted(env.home.store.archived_ids()) == ["fan", "fan.fan.0", "fan.fan.1"]


def test_a_cancel_of_a_parent_at_rest_goes_by_the_mail_lane_and_still_cancels_its_waiting_children(
        fan_env: Env, machine_dir: Path):
    env = fan_env
    (machine_dir / "stuck_child.yaml").write_text(STUCK)
    (machine_dir / "fanout_stuck.yaml").write_text(
        PARENT.replace("NAME", "stuck").replace("machine: gated_child", "machine: stuck_child").replace("JOIN", "all"))
    env.start("fan", machine="fanout_stuck", items=[1, 2, 3])
    supervisor = env.supervise("--workers", "1")
    for i in range(3):
        env.wait_status(f"fan.fan.{i}", "waiting")
    env.send("fan.fan.0", "data")
    wait_for(lambda: any(r["type"] == "child_finished" for r in env.records("fan")), what="one child's end joined")
    assert env.cli("cancel", "fan", "--by", "ops", "--reason", "deal lost").returncode == 0
    env.wait_status("fan", "cancelled")
    for child in ("fan.fan.1", "fan.fan.2"):
        env.wait_status(child, "cancelled")
    assert env.row("fan.fan.0").status == "finished"
    supervisor.send_signal(signal.SIGTERM)
    supervisor.wait(20)
