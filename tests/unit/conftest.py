"""Fixtures the unit tests of the runner share: a fresh home, a runner on the file's own
`clock` fixture (each file picks its start time), the test actions' records reset, and the
four-state shop machine the drain and mail-lane tests run."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.runner import Runner

import runner_test_actions as acts


@pytest.fixture(autouse=True)
def _reset_actions():
    """The test actions record calls in module globals: every test starts from none."""
    acts.reset()
    yield
    acts.reset()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").ensure()


@pytest.fixture
def runner(home: Home, clock: FakeClock) -> Runner:
    """A fresh runner, as a new process would have: it has folded and resolved nothing yet."""
    return Runner(home, clock=clock)


SHOP = """
name: shop
version: 1
initial: reserve
states:
  reserve:
    action: runner_test_actions:step
    retry: {attempts: 2, backoff: 1m}
  charge: {action: runner_test_actions:step, idempotent: false}
  review: {approvers: [alice], timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: ok, source: reserve, dest: charge}
  - {trigger: ok, source: charge, dest: review}
  - {trigger: approve, source: review, dest: reserve}
  - {trigger: finish, source: review, dest: done}
"""


@pytest.fixture
def shop_machine(tmp_path: Path) -> Path:
    """reserve (retried) -> charge (not idempotent) -> review (alice, 1 d) -> reserve | done."""
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP)
    return path
