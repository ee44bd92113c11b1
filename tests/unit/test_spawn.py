"""Spawning states, in one process on a fake clock: child ids, links, max_parallel, the
joins (all, any, quorum), results in the parent's data, early joins and cancels, and a
for_each that is not a list. Children here wait for a message, so the test decides when
and how each one ends. (Crashes at every boundary: tests/faults/test_spawn_kill.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.replay import fold
from engine.run.runner import Runner
from engine.supervise.message import Message
from journal import RunStarted
from journal.records import ChildFinished

CHILD = """
name: child
version: 1
initial: work
states:
  work: {timeout: 1d}
  done: {final: true, outcome: ok}
  flagged: {final: true, outcome: flagged}
transitions:
  - {trigger: finish, source: work, dest: done}
  - {trigger: flag, source: work, dest: flagged}
  - {trigger: timeout, source: work, dest: done}
"""

PARENT = """
name: parent
version: 1
initial: fan
states:
  fan:
    spawn: {SPAWN}
    timeout: 1d
  joined_ok: {final: true, outcome: joined}
  join_failed: {final: true, outcome: failed}
  too_late: {final: true, outcome: timeout}
transitions:
  - {trigger: joined, source: fan, dest: joined_ok}
  - {trigger: failed, source: fan, dest: join_failed}
  - {trigger: timeout, source: fan, dest: too_late}
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock("2026-11-30T09:00:00Z")


@pytest.fixture
def machines(tmp_path: Path) -> Path:
    folder = tmp_path / "machines"
    folder.mkdir()
    (folder / "child.yaml").write_text(CHILD)
    return folder


def parent_machine(machines: Path, spawn: str, name: str = "parent") -> Path:
    path = machines / f"{name}.yaml"
    path.write_text(PARENT.replace("{SPAWN}", spawn).replace("name: parent", f"name: {name}"))
    return path


def launch(runner: Runner, machine: Path, run_id: str = "p", **inputs):
    return runner.run(run_id, runner.launch(machine, inputs, run_id=run_id))


def end(runner: Runner, child: str, trigger: str = "finish") -> None:
    runner.advance(child)  # what a supervisor does with a new run: it then waits in 'work'
    delivered = runner.deliver(child, Message(run=child, trigger=trigger, by="tester"))
    assert delivered.accepted, delivered.reason


def cancel(runner: Runner, child: str) -> None:
    assert runner.deliver(child, Message(run=child, cancel=True, by="tester")).accepted


def test_children_have_stable_readable_ids_and_are_linked_both_ways(home: Home, runner: Runner, machines: Path):
    rs = launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=["a", {"x": 1}, 3])
    assert rs.status == "waiting" and rs.state == "fan" and rs.triggers == []
    ids = ["p.fan.0", "p.fan.1", "p.fan.2"]
    assert list(rs.brood.started) == ids
    first = [home.store.read(i).records[0] for i in ids]
    assert all(isinstance(r, RunStarted) and r.parent == "p" and r.parent_state == "fan" for r in first)
    assert [r.input for r in first] == [{"item": "a"}, {"x": 1}, {"item": 3}]  # a dict item is the input itself
    spawned = [r for r in home.store.read("p").records if type(r).__name__ == "Spawned"]
    assert [c.run_id for c in spawned[0].children] == ids and spawned[0].total == 3


def test_join_all_collects_every_result_under_the_state_name(runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=[1, 2, 3])
    end(runner, "p.fan.1", "flag")
    rs = runner.advance("p")
    assert rs.state == "fan" and rs.brood.finished == 1  # 1 of 3: still waiting
    end(runner, "p.fan.0")
    end(runner, "p.fan.2")
    rs = runner.advance("p")
    assert (rs.status, rs.state) == ("finished", "joined_ok")
    assert rs.data["fan"]["1"] == {"run": "p.fan.1", "status": "finished", "outcome": "flagged", "data": {}}
    assert sorted(rs.data["fan"]) == ["0", "1", "2"]


def test_max_parallel_starts_the_rest_as_slots_free_in_item_order(home: Home, runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items, max_parallel: 2}"),
           items=list(range(5)))
    exists = lambda: [i for i in range(5) if home.store.exists(f"p.fan.{i}")]  # noqa: E731
    assert exists() == [0, 1]
    end(runner, "p.fan.1")
    runner.advance("p")
    assert exists() == [0, 1, 2]  # one slot freed: the next item, not any other
    end(runner, "p.fan.0")
    end(runner, "p.fan.2")
    rs = runner.advance("p")
    assert exists() == [0, 1, 2, 3, 4] and len(rs.brood.live) == 2


def test_join_any_fires_at_the_first_and_the_rest_are_unwanted(runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items, join: any}"), items=[1, 2, 3])
    end(runner, "p.fan.2")
    rs = runner.advance("p")
    assert rs.state == "joined_ok" and rs.unwanted == ["p.fan.0", "p.fan.1"]  # to cancel (the supervisor does)


def test_let_finish_leaves_the_rest_running(runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items, join: any, let_finish: true}"),
           items=[1, 2, 3])
    end(runner, "p.fan.0")
    rs = runner.advance("p")
    assert rs.state == "joined_ok" and rs.unwanted == []


def test_a_quorum_fails_once_too_many_children_are_cancelled(runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items, join: {quorum: 2}}"),
           items=[1, 2, 3])
    cancel(runner, "p.fan.0")
    rs = runner.advance("p")
    assert rs.state == "fan" and rs.brood.cancelled == 1  # 2 of the 2 left may still finish
    cancel(runner, "p.fan.2")
    rs = runner.advance("p")
    assert rs.state == "join_failed" and rs.unwanted == ["p.fan.1"]
    assert rs.data["fan"]["0"]["status"] == "cancelled"


def test_a_quorum_joins_at_n(runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items, join: {quorum: 2}}"),
           items=[1, 2, 3])
    end(runner, "p.fan.0")
    end(runner, "p.fan.1")
    assert runner.advance("p").state == "joined_ok"


def test_branches_start_one_named_child_each_with_the_parents_data(home: Home, runner: Runner, machines: Path):
    rs = launch(runner, parent_machine(machines, "{branches: {legal: child, finance: child.yaml}}"), deal="acme")
    assert list(rs.brood.started) == ["p.fan.legal", "p.fan.finance"]
    assert home.store.read("p.fan.finance").records[0].input == {"deal": "acme"}


def test_an_empty_list_joins_all_at_once(runner: Runner, machines: Path):
    assert launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=[]).state == "joined_ok"


@pytest.mark.parametrize("items, said", [("not a list", "is not a list in the run's data (it is a str)"),
                                         (None, "is not a list in the run's data (it is a NoneType)")])
def test_a_for_each_that_is_not_a_list_escalates_saying_so(runner: Runner, machines: Path, items, said):
    rs = launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=items)
    assert rs.status == "escalated" and rs.escalation.reason == "spawn failed"
    assert f"for_each 'items' {said}" in rs.escalation.detail


def test_a_missing_for_each_key_escalates_naming_the_keys_there_are(runner: Runner, machines: Path):
    rs = launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), clauses=[1])
    assert rs.status == "escalated" and "has no 'items' (it has: clauses)" in rs.escalation.detail


def test_the_spawn_states_timeout_fires_and_leaves_the_children_unwanted(runner: Runner, machines: Path,
                                                                         clock: FakeClock):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=[1, 2])
    end(runner, "p.fan.0")
    clock.advance(86400 + 1)
    rs = runner.advance("p")
    assert rs.state == "too_late" and rs.unwanted == ["p.fan.1"]


def test_cancelling_the_parent_makes_its_live_children_unwanted(runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=[1, 2])
    end(runner, "p.fan.0")
    runner.advance("p")
    cancel(runner, "p")
    assert runner.read("p").unwanted == ["p.fan.1"]


def test_outside_messages_cannot_fire_the_join(runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=[1])
    refused = runner.deliver("p", Message(run="p", trigger="joined", by="mallory"))
    assert not refused.accepted and "not a trigger of state 'fan'" in refused.reason


def test_a_child_end_counts_once_even_if_its_record_were_repeated(home: Home, runner: Runner, machines: Path):
    launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=[1, 2])
    end(runner, "p.fan.0")
    runner.advance("p")
    records = home.store.read("p").records
    again = [r for r in records if isinstance(r, ChildFinished)]
    rs = fold([*records, *again])
    assert rs.brood.finished == 1 and rs.state == "fan"


def test_a_second_visit_spawns_children_of_its_own(home: Home, runner: Runner, machines: Path, clock: FakeClock):
    path = machines / "loop.yaml"
    path.write_text(PARENT.replace("{SPAWN}", "{machine: child, for_each: items}").replace("name: parent", "name: loop")
                    .replace("dest: too_late}", "dest: fan}\n  - {trigger: give_up, source: fan, dest: too_late}"))
    launch(runner, path, items=[1])
    clock.advance(86400 + 1)
    rs = runner.advance("p")
    assert rs.state == "fan" and list(rs.brood.started) == ["p.fan-2.0"] and rs.unwanted == ["p.fan.0"]


def test_an_escalated_child_is_shown_on_its_parents_row_and_the_parent_keeps_waiting(
        home: Home, runner: Runner, machines: Path, clock: FakeClock):
    from engine.supervise.status import status_rows

    (machines / "stuck.yaml").write_text(CHILD.replace("name: child", "name: stuck").replace(
        "  - {trigger: timeout, source: work, dest: done}\n", "").replace("work: {timeout: 1d}", "work: {timeout: 1h}"))
    launch(runner, parent_machine(machines, "{machine: stuck, for_each: items}"), items=[1, 2])
    runner.advance("p.fan.0")
    runner.advance("p.fan.1")
    clock.advance(3601)
    assert runner.advance("p.fan.1").status == "escalated"  # its wait expired, no `timeout` transition
    rows = {row.run_id: row for row in status_rows(home)}
    assert rows["p"].status == "waiting" and rows["p"].children == "0/2 finished, 2 live"
    assert rows["p"].children_escalated == ["p.fan.1: timeout"]
    assert rows["p.fan.1"].parent == "p"
    assert status_rows(home, ["p"])[0].children_escalated == ["p.fan.1: timeout"]  # read from its journal
    from engine import Ratchet
    assert Ratchet(home=home.root, clock=clock).get("p").children_escalated == ("p.fan.1: timeout",)  # the API too
    assert runner.advance("p").state == "fan"  # an escalation is not an end


def test_a_parent_waiting_for_children_cannot_be_upgraded_to_a_state_that_spawns_none(
        runner: Runner, machines: Path, clock: FakeClock):
    from engine.definition.loader import load_file
    from engine.run.upgrade import incompatibilities

    launch(runner, parent_machine(machines, "{machine: child, for_each: items}"), items=[1])
    plain = machines / "plain.yaml"
    plain.write_text(PARENT.replace("    spawn: {SPAWN}\n", "").replace("version: 1", "version: 2")
                     .replace("{trigger: joined", "{trigger: approve").replace("{trigger: failed", "{trigger: reject"))
    reasons = incompatibilities(runner.read("p"), load_file(plain), clock.now())
    assert "state 'fan', where the run is, does not spawn children in v2 but does in v1" in reasons


def test_graph_draws_the_fork_one_box_per_branch_and_the_join_the_join_triggers_leave(machines: Path):
    from engine.definition.loader import load_file
    from engine.definition.mermaid import to_mermaid

    text = to_mermaid(load_file(parent_machine(machines, "{branches: {legal: child, finance: child}, join: any}")).spec)
    for line in ("state fan__fork <<fork>>", "state fan__join <<join>>", "fan --> fan__fork: spawn",
                 "fan__fork --> fan__legal", "fan__finance --> fan__join", "fan__join --> joined_ok: joined",
                 "fan__join --> join_failed: failed", "fan --> too_late: timeout",
                 "fan: spawns children, join any, timeout 1d"):
        assert f"    {line}" in text.splitlines(), line


def test_with_escalated_children_fail_an_escalated_child_fails_the_join(runner: Runner, machines: Path,
                                                                        clock: FakeClock):
    (machines / "stuck.yaml").write_text(CHILD.replace("name: child", "name: stuck").replace(
        "  - {trigger: timeout, source: work, dest: done}\n", "").replace("work: {timeout: 1d}", "work: {timeout: 1h}"))
    launch(runner, parent_machine(machines, "{machine: stuck, for_each: items, escalated_children: fail}"),
           items=[1, 2])
    runner.advance("p.fan.0")
    runner.advance("p.fan.1")
    clock.advance(3601)
    assert runner.advance("p.fan.1").status == "escalated"
    rs = runner.advance("p")
    assert rs.state == "join_failed" and rs.unwanted == ["p.fan.0"]
    assert rs.data["fan"]["1"]["status"] == "escalated"


@pytest.mark.parametrize(("count", "shown"), [
    (4, "c.fan.0, c.fan.1, c.fan.2, c.fan.3 (4 of 9)"),
    (5, "c.fan.0, c.fan.1, c.fan.2, …, c.fan.4 (5 of 9)"),
])
def test_tail_lists_the_children_a_spawn_started_and_marks_only_real_omissions(count: int, shown: str):
    from engine.cli.timeline import timeline_line
    from journal.records import ChildRun, Spawned

    record = Spawned(seq=5, ts="2026-11-30T09:00:00Z", prev="0" * 64, state="fan", total=9,
                     children=[ChildRun(run_id=f"c.fan.{i}", key=str(i), machine="child") for i in range(count)])
    assert timeline_line(record).endswith(f"spawned          fan  started {shown}")


def test_status_tree_json_lists_each_parent_followed_by_its_children(home: Home, runner: Runner, machines: Path):
    """`--tree` orders the rows for `--json` too: id order would put `p-2` between `p` and
    its children, and `p.fan.10` before `p.fan.2`."""
    import json

    from click.testing import CliRunner

    from engine.cli import main

    machine = parent_machine(machines, "{machine: child, for_each: items}")
    launch(runner, machine, "p", items=list(range(12)))
    launch(runner, machine, "p-2", items=[])
    result = CliRunner().invoke(main, ["--home", str(home.root), "status", "--tree", "--json"])
    assert result.exit_code == 0, result.output
    ids = [row["run_id"] for row in json.loads(result.stdout)]
    assert ids == ["p", *(f"p.fan.{i}" for i in range(12)), "p-2"]


FOUR_EYES_CHILD = """
name: signoff
version: 1
initial: review
states:
  review: {approvers: [alice, bob], not_starter: true, timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""


def test_a_childs_starter_is_its_parents_so_not_starter_holds_across_a_fan_out(home: Home, runner: Runner,
                                                                                  machines: Path):
    """alice starts the parent; each child asks for a four-eyes sign-off: not hers."""
    from engine.trust.sender import UNIX_USER, Sender

    (machines / "signoff.yaml").write_text(FOUR_EYES_CHILD)
    machine = parent_machine(machines, "{machine: signoff, for_each: items}")
    runner.run("p", runner.launch(machine, {"items": [1]}, run_id="p", by="alice"))
    child = "p.fan.0"
    assert home.store.read(child).records[0].by == "alice"
    runner.advance(child)
    alice = Sender("alice", True, UNIX_USER)
    refused = runner.deliver(child, Message(run=child, trigger="approve", by="alice"), sender=alice)
    assert not refused.accepted and "started the run" in refused.reason and "not_starter" in refused.reason
    assert runner.read(child).state == "review"
    bob = Sender("bob", True, UNIX_USER)
    assert runner.deliver(child, Message(run=child, trigger="approve", by="bob"), sender=bob).accepted
    assert runner.read(child).state == "done"
