"""A failed step keeps its place (file:line, a bounded traceback) and its outcome, whatever follows."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.outcome import TRACEBACK_BYTES, TRACEBACK_FRAMES
from engine.run.runner import Runner
from journal import StepFailed
from journal.records import record_type

import runner_test_actions as acts
from journal_builders import story

ACTIONS = '''
def charge(ctx):
    return ctx.data["amount"]  # line 3: KeyError


def deep(ctx, n=0):
    if n < 60:
        return deep(ctx, n + 1)
    raise ValueError("x" * ctx.input["pad"] + " the end")  # line 9


def parse(ctx):
    import json
    return json.loads("{")  # line 14: raised deep in the standard library
'''

MACHINE = """
name: billing
version: 1
initial: charge
states:
  charge: {action: ACTION, idempotent: false}
  done: {final: true}
  failed: {final: true, outcome: failed}
transitions:
  - {trigger: ok, source: charge, dest: done}
  - {trigger: error, source: charge, dest: failed, conditions: runner_test_actions:raising_condition}
"""


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(Home(tmp_path / "home").ensure(), clock=FakeClock("2026-11-27T09:41:00Z"))


@pytest.fixture
def module(tmp_path: Path):
    """A module of failing actions beside the machine, named for this test alone."""
    name = f"failing_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(ACTIONS)
    yield name
    sys.modules.pop(name, None)


def machine(tmp_path: Path, action: str) -> Path:
    path = tmp_path / "billing.yaml"
    path.write_text(MACHINE.replace("ACTION", action))
    return path


def failure(runner: Runner) -> StepFailed:
    found = [r for r in runner.home.store.read("r1").records if isinstance(r, StepFailed)]
    assert len(found) == 1
    return found[0]


def test_a_guard_on_the_error_transition_that_raises_escalates_and_keeps_the_failure(runner, tmp_path):
    # Regression: `plan._failed` let the ConditionError out, so the queued step_failed was
    # never written, and the next advance escalated the step as "unknown outcome".
    path = machine(tmp_path, "runner_test_actions:step")
    acts.SCRIPT["charge"] = [acts.Fatal("card declined")]
    rs = runner.launch(path, {}, run_id="r1")
    assert (rs.status, rs.escalation.reason) == ("escalated", "condition failed")
    assert "a condition of 'error' from 'charge' raised KeyError" in rs.escalation.detail
    kinds = [record_type(r) for r in story(runner.home.store.read("r1").records)]
    assert kinds[-3:] == ["step_started", "step_failed", "escalated"]
    assert failure(runner).error == "card declined"
    assert runner.advance("r1").escalation.reason == "condition failed"  # not "unknown outcome"
    assert len(acts.CALLS) == 1


def test_a_failure_records_where_it_was_raised_and_its_traceback(runner, tmp_path, module):
    rs = runner.launch(machine(tmp_path, f"{module}:charge"), {}, run_id="r1")
    assert rs.status == "escalated"
    failed = failure(runner)
    assert failed.where == f"{tmp_path / module}.py:3"
    assert failed.traceback.startswith("Traceback (most recent call last):")
    assert f'{module}.py", line 3, in charge' in failed.traceback
    assert failed.traceback.endswith("KeyError: 'amount'")
    assert "engine/run" not in failed.traceback  # the action's frames, not the engine's


def test_an_error_raised_in_a_library_is_placed_at_the_actions_call(runner, tmp_path, module):
    runner.launch(machine(tmp_path, f"{module}:parse"), {}, run_id="r1")
    failed = failure(runner)
    assert failed.where == f"{tmp_path / module}.py:14"
    assert "json/decoder.py" in failed.traceback and failed.error_type == "JSONDecodeError"


def test_a_traceback_keeps_the_innermost_frames(runner, tmp_path, module):
    runner.launch(machine(tmp_path, f"{module}:deep"), {"pad": 10}, run_id="r1")
    failed = failure(runner)
    assert failed.where == f"{tmp_path / module}.py:9"
    # The last 8 of 62 frames (Python folds repeats): 7 calls of `deep`, then the raise.
    assert TRACEBACK_FRAMES == 8 and failed.traceback.count("line 8, in deep") == 3
    assert "[Previous line repeated 4 more times]" in failed.traceback and "call_step" not in failed.traceback
    assert failed.traceback.endswith("ValueError: xxxxxxxxxx the end")


def test_a_traceback_is_bounded_and_keeps_its_end(runner, tmp_path, module):
    runner.launch(machine(tmp_path, f"{module}:deep"), {"pad": 6000}, run_id="r1")
    failed = failure(runner)
    assert len(failed.traceback.encode()) <= TRACEBACK_BYTES
    assert failed.traceback.startswith("… (earlier lines cut)\n")
    assert failed.traceback.endswith(" the end")
    line = [r for r in runner.home.store.path("r1").read_bytes().splitlines() if b'"step_failed"' in r][0]
    assert len(line) < len(failed.error) + TRACEBACK_BYTES + 600  # the record stays one bounded line
