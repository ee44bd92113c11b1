"""A journal that chains but leads nowhere is damage, said as such (found by a review).

The hash chain does not protect the last line: a `transition` to a state the definition
lacks used to fold into a run "stalled" in state 'nowhere' that every worker then failed
on. It is refused by replay (ReplayError), so `status` shows the run as damaged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ReplayError
from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.replay import fold
from engine.run.runner import Runner
from engine.supervise.status import JournalStatus, status_rows
from journal import Transition

MACHINE = """
name: flow
version: 1
initial: review
states:
  review: {approvers: [alice], timeout: 2d}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""


def test_a_transition_to_an_unknown_state_is_damage_not_a_stalled_run(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(MACHINE)
    home = Home(tmp_path / "home").ensure()
    Runner(home, clock=FakeClock()).launch(tmp_path / "flow.yaml", {}, run_id="r1")
    with home.store.writer("r1") as w:  # a valid line, a valid chain, an impossible story
        w.append(Transition(trigger="approve", source="review", dest="nowhere"))
    with pytest.raises(ReplayError, match="'nowhere', a state the run's definition does not have"):
        fold(home.store.read("r1").records)
    row = status_rows(home, ["r1"])[0]
    assert row.status == JournalStatus.DAMAGED and "nowhere" in (row.error or "")
