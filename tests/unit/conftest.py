"""Fixtures the unit tests of the runner share: a fresh home, a runner on the file's own
`clock` fixture (each file picks its start time), and the test actions' records reset."""

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
