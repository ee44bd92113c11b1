"""Where cancel, on_cancel, upgrade, code fingerprints and status meet (found by a review).

An upgraded run's fingerprints are the new definition's; a cancelled run whose on_cancel
was cut off is shown as owing it; an on_cancel given up after repeated cut-offs is
reported to on_escalate like a failed one.
"""
from __future__ import annotations

import sys
import uuid

import pytest

from engine.definition.loader import load_file
from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.replay import fold
from engine.run.runner import Runner
from engine.supervise.message import Message
from engine.supervise.status import status_rows
from journal import CompensationStarted

import runner_test_actions as acts
from journal_builders import story


def test_status_keeps_flagging_code_changed_after_the_run_was_upgraded_to_the_new_code(tmp_path):
    clock = FakeClock("2026-11-27T09:00:00Z")
    home = Home(tmp_path / "home").ensure()
    mod = f"up_{uuid.uuid4().hex[:8]}"
    code = tmp_path / f"{mod}.py"
    code.write_text("def draft(ctx):\n    return None\n\ndef send(ctx):\n    return None\n")
    text = f"""
name: flow
version: 1
initial: draft
states:
  draft: {{action: {mod}:draft}}
  review: {{approvers: [alice], timeout: 2d}}
  send: {{action: {mod}:send}}
  done: {{final: true}}
transitions:
  - {{trigger: ok, source: draft, dest: review}}
  - {{trigger: approve, source: review, dest: send}}
  - {{trigger: ok, source: send, dest: done}}
"""
    (tmp_path / "v1.yaml").write_text(text)
    rs = Runner(home, clock=clock).launch(tmp_path / "v1.yaml", {}, run_id="r1")
    assert rs.status == "waiting"
    # A deploy renames send -> send_email; v2 of the machine follows it; the run is upgraded.
    code.write_text("def draft(ctx):\n    return None\n\ndef send_email(ctx):\n    return None\n")
    sys.modules.pop(mod, None)
    (tmp_path / "v2.yaml").write_text(text.replace("version: 1", "version: 2").replace(":send}", ":send_email}"))
    v2 = load_file(tmp_path / "v2.yaml")
    msg = Message(run="r1", by="ops", upgrade={"definition": v2.definition, "definition_hash": v2.hash,
                                               "source": str((tmp_path / "v2.yaml").resolve())})
    d = Runner(home, clock=clock).deliver("r1", msg, source_file="u1.json")
    assert d.accepted, d.reason
    assert d.state.definition_hash == v2.hash
    row = status_rows(home, ["r1"], now=clock.now())[0]
    # The run follows v2, whose code is exactly what is on disk: nothing changed under it.
    assert row.code_changed == [], row.code_changed
    sys.modules.pop(mod, None)


MACHINE = """
name: holds
version: 1
initial: draft
on_cancel: runner_test_actions:release_hold
states:
  draft: {action: runner_test_actions:step}
  review: {approvers: [alice], timeout: 2d}
  done: {final: true}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: approve, source: review, dest: done}
"""


def test_status_of_a_cancelled_run_whose_on_cancel_was_cut_off_says_it_is_owed_and_stalled(tmp_path):
    acts.reset()
    clock = FakeClock("2026-11-27T09:00:00Z")
    home = Home(tmp_path / "home").ensure()
    (tmp_path / "m.yaml").write_text(MACHINE)
    runner = Runner(home, clock=clock)
    runner.launch(tmp_path / "m.yaml", {}, run_id="r1")

    def cut(ctx):  # the process dies (kill -9, a second Ctrl-C) in the middle of on_cancel
        raise KeyboardInterrupt
    orig = acts.release_hold
    acts.release_hold = cut
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.deliver("r1", Message(run="r1", cancel=True, by="ops"), source_file="c1.json")
    finally:
        acts.release_hold = orig
    rs = fold(home.store.read("r1").records)
    assert isinstance(home.store.read("r1").records[-1], CompensationStarted)
    assert rs.todo is not None  # on_cancel is owed; nobody holds the run
    row = status_rows(home, ["r1"], now=clock.now())[0]
    # Honest status: work is owed and no process holds the run -> it should say stalled
    assert (row.owes, row.held, row.stalled) == ("on_cancel", False, True), row
    acts.reset()


NOTIFYING = MACHINE.replace("on_cancel:", "on_escalate: runner_test_actions:notify\non_cancel:")


def test_an_on_cancel_given_up_after_being_cut_off_three_times_is_reported_to_on_escalate(tmp_path):
    acts.reset()
    clock = FakeClock("2026-11-27T09:00:00Z")
    home = Home(tmp_path / "home").ensure()
    (tmp_path / "m.yaml").write_text(NOTIFYING)
    Runner(home, clock=clock).launch(tmp_path / "m.yaml", {}, run_id="r1")

    def cut(ctx):  # each call is cut off (killed past a stop's grace, or at the job timeout)
        acts.COMPENSATED.append((ctx.idempotency_key, ctx.state, ctx.attempt))
        raise acts.Die
    orig = acts.release_hold
    acts.release_hold = cut
    try:
        with pytest.raises(acts.Die):
            Runner(home, clock=clock).deliver("r1", Message(run="r1", cancel=True, by="ops"), source_file="c1")
        for _ in range(2):
            with pytest.raises(acts.Die):
                Runner(home, clock=clock).advance("r1")
    finally:
        acts.release_hold = orig
    rs = Runner(home, clock=clock).advance("r1")
    last = story(home.store.read("r1").records)[-1]
    assert (type(last).__name__, last.error_type) == ("CompensationFinished", "Abandoned")
    assert len(acts.COMPENSATED) == 3 and rs.todo is None
    # The hold may still be in place: like a failed on_cancel, a person must hear of it.
    assert [n[1]["reason"] for n in acts.NOTIFIED] == ["on_cancel failed"], acts.NOTIFIED
    acts.reset()
