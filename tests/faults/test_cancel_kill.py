"""Kill -9 around a cancel and its `on_cancel` compensation, at every crash point, restart,
and prove from the journal and a side-effect ledger that the compensation ran once.

A clean run counts every crash point it passes: a step places a hold, the run waits, a
cancel is delivered (`cancelled`), `compensation_started` is fsync'd, on_cancel releases
the hold (the ledger line, then "mid_compensation"), `compensation_finished` is fsync'd.
Then, for every point and occurrence, a fresh run is SIGKILLed there and restarted (the
cancel delivered again under the same inbox file name, as a supervisor re-delivers a
file it had claimed, then an advance). Each time:
- the journal verifies and the run ends cancelled with `compensation_finished`;
- the hold is released exactly once (one effect, always the key "r1/cancel");
- killed after `compensation_finished` was durable: on_cancel is never called again;
  killed between `compensation_started` and it: called once more, with the same key.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections import Counter
from pathlib import Path

import pytest

from journal import CompensationFinished, CompensationStarted, FileStore, verify

from forked import run_forked
from journal_builders import story

HERE = Path(__file__).resolve().parent
POINTS = ("after_append", "before_compensation", "mid_compensation", "after_compensation")

MACHINE = """
name: holding
version: 1
initial: hold
on_cancel: cancel_actions:release_hold
states:
  hold: {action: cancel_actions:place_hold}
  review: {approvers: [alice], timeout: 2d}
  done: {final: true}
transitions:
  - {trigger: ok, source: hold, dest: review}
  - {trigger: approve, source: review, dest: done}
"""


def drive(folder: Path, machine: Path, **env: str) -> tuple[int, object]:
    """Start (or continue) run r1, deliver the cancel, advance: in a forked child, a real
    process that SIGKILL kills for real. Returns (exit code or -signal, result)."""
    def work() -> dict[str, object]:
        from engine.home import Home
        from engine.run.runner import Runner
        from engine.supervise.message import Message

        runner = Runner(Home(folder / "home").ensure())
        runner.run(runner.launch(machine, {}, run_id="r1").run_id)
        runner.deliver("r1", Message(run="r1", cancel=True, by="ops", reason="deal off"), source_file="cancel-1.json")
        rs = runner.advance("r1")
        return {"status": rs.status, "owed": rs.todo is not None}

    base = {"RATCHET_CLOCK_FILE": str(folder / "clock"), "RATCHET_LEDGER": str(folder / "ledger.jsonl")}
    return run_forked(work, {**base, **env}, folder / "result.json")


def ledger(folder: Path) -> list[dict]:
    path = folder / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def case(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "clock").write_text("2026-11-27T09:00:00.000000Z")
    return folder


def kill_and_restart(root: Path, machine: Path, point: str, n: int) -> list[str]:
    """Every problem found for a kill at the n-th `point` (empty: all good)."""
    where = f"killed at {point}:{n}"
    folder = case(root, f"{point}-{n}")
    code, result = drive(folder, machine, RATCHET_CRASH_AT=f"{point}:{n}")
    if code != -signal.SIGKILL:
        return [f"{where}: expected SIGKILL, got exit {code}: {result}"]
    store = FileStore(folder / "home")
    before = store.read("r1").records if store.exists("r1") else []
    calls_before = len(ledger(folder))
    code, result = drive(folder, machine)
    if code != 0 or result != {"status": "cancelled", "owed": False}:
        return [f"{where}: restart ended {code}: {result}"]
    problems = []
    if not verify(store.path("r1"), run_id="r1").ok:
        problems.append(f"{where}: journal does not verify")
    records = story(store.read("r1").records)
    if not isinstance(records[-1], CompensationFinished) or records[-1].error is not None:
        problems.append(f"{where}: the run does not end with a successful compensation: {records[-1]}")
    releases = [e for e in ledger(folder) if e["kind"] == "hold.release"]
    if [e["key"] for e in releases if e["effect"]] != ["r1/cancel"] or {e["key"] for e in releases} != {"r1/cancel"}:
        problems.append(f"{where}: the hold was not released exactly once under r1/cancel: {releases}")
    again = [e for e in ledger(folder)[calls_before:] if e["kind"] == "hold.release"]
    if any(isinstance(r, CompensationFinished) for r in before):
        if again:
            problems.append(f"{where}: on_cancel called again after compensation_finished: {again}")
    elif any(isinstance(r, CompensationStarted) for r in before):
        started = [r.attempt for r in records if isinstance(r, CompensationStarted)]
        if len(again) != 1 or started != [1, 2]:
            problems.append(f"{where}: a call cut off must be made once more (attempts {started}, calls {again})")
    elif len(releases) != 1:
        problems.append(f"{where}: on_cancel called {len(releases)} times")
    places = [e for e in ledger(folder) if e["kind"] == "hold.place" and e["effect"]]
    if len(places) != 1:
        problems.append(f"{where}: the hold was placed {len(places)} times")
    return problems


@pytest.mark.faults
def test_on_cancel_runs_once_across_a_kill_at_every_point(tmp_path: Path):
    shutil.copy(HERE / "cancel_actions.py", tmp_path / "cancel_actions.py")
    machine = tmp_path / "holding.yaml"
    machine.write_text(MACHINE)
    clean = case(tmp_path, "clean")
    code, result = drive(clean, machine, RATCHET_CRASH_COUNT=str(clean / "counts"))
    assert (code, result) == (0, {"status": "cancelled", "owed": False}), result
    counts = Counter((clean / "counts").read_text().split())
    assert all(counts[p] for p in POINTS), counts
    cases = [(p, n) for p in POINTS for n in range(1, counts[p] + 1)]
    problems = [problem for point, n in cases for problem in kill_and_restart(tmp_path, machine, point, n)]
    assert not problems, "\n".join(problems)
