"""Supervisors sharing a store take the oldest ready runs in a random order (supervisor._spread),
so they seldom pick the same run at once, and no ready run waits for ever."""

from __future__ import annotations

import random

from engine.supervise.supervisor import SPREAD, _spread


def test_every_ready_run_is_dispatched_once_and_those_past_the_window_in_order() -> None:
    ready = {f"run{i:04d}": None for i in range(SPREAD + 50)}
    for _ in range(20):
        order = _spread(ready)
        assert sorted(order) == sorted(ready)
        assert order[SPREAD:] == list(ready)[SPREAD:]


def test_each_of_the_oldest_runs_comes_first_in_some_turn_and_two_supervisors_seldom_agree() -> None:
    random.seed(12)
    ready = {f"run{i:04d}": None for i in range(SPREAD * 3)}
    firsts = [_spread(ready)[0] for _ in range(SPREAD * 40)]
    assert set(firsts) == set(list(ready)[:SPREAD])  # no run in the window is passed over for good
    same = sum(_spread(ready)[0] == _spread(ready)[0] for _ in range(1000))
    assert same < 100  # two supervisors' first picks: 1 in SPREAD by chance, not every time


def test_one_or_no_ready_run_is_taken_as_it_is() -> None:
    assert _spread({}) == [] and _spread({"a": None}) == ["a"]
