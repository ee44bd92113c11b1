"""When the engine seals (engine.run.sealing): every rest, in the same write, and what a crash leaves."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from engine.run.clock import FakeClock
from engine.run.runner import Runner
from engine.run.sealing import home_key, home_public_key, key_paths
from engine.supervise.message import Message
from journal import JournalWriter, Sealed
from journal.records import record_type
from journal.seal import check, fetch_seal

import runner_test_actions as acts
from damage import lines_of, write_lines

DAY = 86400
MACHINE = """
name: sealme
version: 1
initial: draft
on_cancel: runner_test_actions:release_hold
states:
  draft:
    action: runner_test_actions:step
    retry: {attempts: 3, backoff: 2s, factor: 2, max_backoff: 1m, jitter: false}
  review: {approvers: [alice], timeout: 2d}
  send: {action: runner_test_actions:step}
  done: {final: true}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: approve, source: review, dest: send}
  - {trigger: ok, source: send, dest: done}
"""


@pytest.fixture
def clock():
    return FakeClock("2026-11-27T09:00:00Z")


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    path = tmp_path / "sealme.yaml"
    path.write_text(MACHINE)
    return path


def types(runner: Runner, run_id: str = "r1") -> list[str]:
    return [record_type(r) for r in runner.home.store.read(run_id).records]


def checked(runner: Runner, run_id: str = "r1"):
    """The seal verdict as `ratchet verify` reaches it: side file first, then the journal."""
    side = fetch_seal(runner.home.store, run_id)
    return check(runner.home.store.read(run_id).records, run_id, home_public_key(runner.home), side)


def approve(by: str = "alice") -> Message:
    return Message(run="r1", trigger="approve", by=by)


def test_each_rest_is_sealed_in_the_batch_that_reaches_it_and_nothing_else_is(runner, machine, clock):
    acts.SCRIPT["draft"] = [acts.Flaky("503")]
    runner.launch(machine, {}, run_id="r1")  # fails once: sleeps before its retry
    assert types(runner)[-2:] == ["retry_scheduled", "sealed"]
    clock.advance(10)
    runner.advance("r1")
    assert types(runner)[-2:] == ["waiting", "sealed"]
    runner.deliver("r1", approve("mallory"), source_file="m.json")  # refused while waiting: sealed too
    assert types(runner)[-2:] == ["trigger_refused", "sealed"]
    runner.deliver("r1", approve(), source_file="a.json")
    kinds = types(runner)
    assert kinds[-2:] == ["run_finished", "sealed"]
    # Sealed exactly after each rest, never mid-way (after a step_started or a transition).
    rests = {"retry_scheduled", "waiting", "trigger_refused", "run_finished"}
    assert [kinds[i - 1] for i, kind in enumerate(kinds) if kind == "sealed"] == [
        "retry_scheduled", "waiting", "trigger_refused", "run_finished"]
    assert all(kinds[i + 1] == "sealed" for i, kind in enumerate(kinds) if kind in rests)
    result = checked(runner)
    assert result.ok and result.seals == 4 and result.through == len(kinds) - 1
    assert fetch_seal(runner.home.store, "r1").seq == len(kinds)  # the side file is the latest seal


def test_escalated_cancelled_and_compensated_runs_are_sealed(runner, machine, clock):
    runner.launch(machine, {}, run_id="r1")
    clock.advance(2 * DAY + 1)
    assert runner.advance("r1").status == "escalated"
    assert types(runner)[-2:] == ["escalated", "sealed"]
    runner.deliver("r1", Message(run="r1", cancel=True, by="ops"), source_file="c.json")
    kinds = types(runner)
    assert kinds[-4:] == ["cancelled", "compensation_started", "compensation_finished", "sealed"]
    assert checked(runner).ok


def test_a_seal_adds_no_write_and_no_fsync(machine, clock, monkeypatch, home):
    """The seal goes in the batch it covers (as many appends, each one write + one fdatasync,
    with sealing as without), and its side file is not fsync'd: the real sync calls, counted."""
    calls: list[int] = []
    syncs: list[str] = []
    real_append, real_fsync, real_fdatasync = JournalWriter.append_many, os.fsync, os.fdatasync

    def counted(self, records):
        calls.append(len(records))
        return real_append(self, records)

    monkeypatch.setattr(JournalWriter, "append_many", counted)
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append("fdatasync"), real_fdatasync(fd))[1])
    home_key(home)  # made once per home, not per run
    counts, synced = {}, {}
    for sealing in (True, False):
        calls.clear()
        syncs.clear()
        runner = Runner(home, clock=clock, sealing=sealing)
        run_id = f"r-{sealing}"
        runner.launch(machine, {}, run_id=run_id)
        runner.deliver(run_id, Message(run=run_id, trigger="approve", by="alice"), source_file=f"{run_id}.json")
        counts[sealing], synced[sealing] = list(calls), Counter(syncs)
    assert len(counts[True]) == len(counts[False]) == 4
    assert [a - b for a, b in zip(counts[True], counts[False], strict=True)] == [0, 1, 0, 1]
    assert synced[True] == synced[False] == Counter(fdatasync=4, fsync=1), synced  # fsync: runs/ for the new file
    assert fetch_seal(home.store, "r-True") is not None and fetch_seal(home.store, "r-False") is None


def test_a_seal_cut_off_by_a_crash_is_made_again_on_the_next_open(runner, machine, clock):
    runner.launch(machine, {}, run_id="r1")
    path = runner.home.store.path("r1")
    lines = lines_of(path)
    assert b'"type":"sealed"' in lines[-1]
    write_lines(path, lines[:-1])  # a crash tore the seal, the last line of its batch
    fresh = Runner(runner.home, clock=clock)
    fresh.advance("r1")  # nothing to do but to seal the rest it finds
    assert types(fresh)[-2:] == ["waiting", "sealed"] and len(types(fresh)) == len(lines)
    assert checked(fresh).ok


def test_a_side_file_a_crash_left_behind_is_written_on_the_next_open(runner, machine, clock):
    runner.launch(machine, {}, run_id="r1")
    store = runner.home.store
    store.withdraw("seals", "r1.json")  # a crash came between the journal's fsync and the side file
    assert not checked(runner).ok and "is missing" in checked(runner).problem
    Runner(runner.home, clock=clock).advance("r1")
    assert checked(runner).ok and fetch_seal(store, "r1").seq == len(types(runner))


def test_an_old_resting_journal_is_sealed_when_next_opened(runner, machine, clock):
    Runner(runner.home, clock=clock, sealing=False).launch(machine, {}, run_id="r1")  # before sealing existed
    assert "sealed" not in types(runner) and fetch_seal(runner.home.store, "r1") is None
    result = checked(runner)
    assert result.ok and not result.sealed
    runner.deliver("r1", approve("mallory"), source_file="m.json")
    kinds = types(runner)
    assert kinds[-4:] == ["waiting", "sealed", "trigger_refused", "sealed"]
    assert checked(runner).ok


def test_the_key_is_the_homes_and_its_public_half_is_checked(runner, machine, home):
    assert not key_paths(home)[0].exists()  # created on first use, not before
    runner.launch(machine, {}, run_id="r1")
    private, public = key_paths(home)
    assert private.exists() and public.exists()
    seal = next(r for r in runner.home.store.read("r1").records if isinstance(r, Sealed))
    from journal.keys import key_id, load_public_key

    assert seal.key == key_id(load_public_key(public)) == key_id(home_public_key(home))
    public.unlink()
    public.write_bytes(
        b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAn5KbfUAIoRf/Y4451Qb00EBCbqXku/ptObhhJbLEm7w=\n"
        b"-----END PUBLIC KEY-----\n")
    from journal import KeyFileError

    with pytest.raises(KeyFileError, match="not the public half of"):
        home_public_key(home)


def test_a_side_file_that_cannot_be_written_never_fails_the_run_and_is_written_later(runner, machine, clock,
                                                                                    caplog):
    (runner.home.root / "seals").write_text("in the way\n")  # seals/ cannot be made: every publish fails
    rs = runner.launch(machine, {}, run_id="r1")
    assert rs.status == "waiting" and types(runner)[-2:] == ["waiting", "sealed"]
    assert "cannot keep its latest seal outside its journal" in caplog.text
    (runner.home.root / "seals").unlink()
    runner.advance("r1")  # the next open tries again
    assert checked(runner).ok and fetch_seal(runner.home.store, "r1").seq == len(types(runner))
