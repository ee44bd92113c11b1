"""Replay: a journal folds into the same state the live run had, and every prefix of it
(every place a crash could stop the runner, torn lines included) resumes to the same end
without repeating a completed step."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from test_runner import MACHINE

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.plan import Sleep, Stop, plan
from engine.run.replay import fold
from engine.run.runner import Runner
from engine.supervise.message import Message
from journal import StepStarted, StepSucceeded

import runner_test_actions as acts

ANSWERS = {"review": ("approve", "alice"), "confirm": ("confirm", "ops")}
COMPARED = ("run_id", "state", "status", "data", "attempt", "deadline", "triggers", "approvers",
            "outcome", "visits", "todo", "last_seq", "abandons", "inbox_files")


def drive(runner: Runner, rid: str):
    """Drive a run to its end, answering each wait like a person would."""
    for _ in range(20):
        rs = runner.run(rid)
        if rs.status != "waiting":
            return rs
        trigger, by = ANSWERS[rs.state]
        runner.deliver(rid, Message(run=rid, trigger=trigger, by=by), source_file=f"{rs.state}.json")
    raise AssertionError("run did not end")


@pytest.fixture
def journal(tmp_path: Path) -> tuple[Path, list[bytes], object]:
    """A complete run's journal lines (a retry, two waits, a non-idempotent step)."""
    machine = tmp_path / "renewal.yaml"
    machine.write_text(MACHINE)
    acts.SCRIPT["draft"] = [acts.Flaky("503"), {"summary": "draft v2"}]
    runner = Runner(Home(tmp_path / "full"), clock=FakeClock())
    rid = runner.start(machine, {"customer": "acme"}, run_id="r1")
    live = drive(runner, rid)
    acts.reset()
    return machine, runner.home.store.path(rid).read_bytes().splitlines(keepends=True), live


def test_fold_equals_the_live_state(journal):
    _, lines, live = journal
    replayed = fold(_records(lines))
    assert live.status == "finished"
    for name in COMPARED:
        assert getattr(replayed, name) == getattr(live, name), name


def _records(lines: list[bytes]) -> list:
    from journal import decode
    return [decode(line) for line in lines]


def test_plan_is_a_pure_function_of_the_state(journal):
    machine_path, lines, _ = journal
    from engine.definition.loader import load_machine
    machine = load_machine(machine_path)
    now = FakeClock().now()
    for k in range(1, len(lines) + 1):
        rs = fold(_records(lines[:k]))
        first = plan(rs, machine, now, rng=random.Random(7))
        second = plan(fold(_records(lines[:k])), machine, now, rng=random.Random(7))
        assert first == second, k
        if isinstance(first, Stop):
            assert rs.status in ("waiting", "finished", "escalated"), (k, rs.status)
        assert not isinstance(first, Sleep) or rs.status == "retrying"


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_every_prefix_resumes_to_the_end_without_repeating_a_step(journal, tmp_path, torn):
    machine, lines, live = journal
    for k in range(1, len(lines)):
        home = Home(tmp_path / f"p{k}{torn}").ensure()
        tail = lines[k][: len(lines[k]) // 2] if torn else b""
        home.store.path("r1").write_bytes(b"".join(lines[:k]) + tail)
        before = fold(_records(lines[:k]))
        done_keys = _succeeded(_records(lines[:k]))
        acts.reset()
        acts.SCRIPT["draft"] = [{"summary": "draft v2"}]
        rs = drive(Runner(home, clock=FakeClock()), "r1")
        after = home.store.read("r1").records
        called = {key for _, _, key in acts.CALLS}
        assert not called & done_keys, f"prefix {k}: a completed step ran again"
        assert max(Counter(_succeeded_list(after)).values()) == 1, k
        unsafe = before.in_flight is not None and before.in_flight.state == "send"
        if unsafe:
            assert rs.escalation.reason == "unknown outcome", k
            assert "r1/send/1" not in called
        else:
            assert (rs.status, rs.state, rs.data) == (live.status, live.state, live.data), k
            assert set(_succeeded_list(after)) == set(_succeeded_list(_records(lines)))


def _succeeded_list(records: list) -> list[str]:
    keys, key = [], None
    for r in records:
        if isinstance(r, StepStarted):
            key = r.idempotency_key
        elif isinstance(r, StepSucceeded):
            keys.append(key)
    return keys


def _succeeded(records: list) -> set[str]:
    return set(_succeeded_list(records))
