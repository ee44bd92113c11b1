"""The concurrent driver (engine.run.concurrent) on the PostgreSQL store, a private server:
runs driven by eight lanes end as driven one by one, and eight lanes may all hold their
run's writer (a pooled connection each) and still query beside it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import lane_actions as acts
import pytest

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.concurrent import Driver, Launch
from engine.run.replay import RunState
from engine.run.runner import Runner

from pg_cluster import Cluster

LANES = """
name: lanes
version: 1
initial: first
states:
  first: {action: lane_actions:work}
  second: {action: lane_actions:work, idempotent: false}
  review: {approvers: [alice], timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: ok, source: first, dest: second}
  - {trigger: ok, source: second, dest: review}
  - {trigger: approve, source: review, dest: done}
"""
START = "2026-11-27T09:00:00Z"


@pytest.fixture(autouse=True)
def _reset_lane_actions():
    acts.reset()
    yield
    acts.reset()


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    path = tmp_path / "lanes.yaml"
    path.write_text(LANES)
    return path


def jobs(machine: Path, n: int) -> list[Launch]:
    return [Launch(machine, {"n": i, **({"fail_in": "second"} if i % 4 == 1 else {})}, run_id=f"r{i:02d}")
            for i in range(n)]


def test_eight_lanes_on_postgresql_end_as_one_by_one(tmp_path, machine, pg_cluster: Cluster):
    laned = Home(tmp_path / "laned", store=pg_cluster.fresh_schema()).ensure()
    alone = Home(tmp_path / "alone", store=pg_cluster.fresh_schema()).ensure()
    try:
        outcomes = Driver(laned, threads=8, clock=FakeClock(START)).drive(jobs(machine, 16))
        runner = Runner(alone, clock=FakeClock(START))
        for job in jobs(machine, 16):
            runner.launch(job.machine, job.input, run_id=job.run_id)
        assert {o.status for o in outcomes if isinstance(o, RunState)} == {"waiting", "escalated"}
        for job in jobs(machine, 16):
            assert acts.story(laned, job.run_id) == acts.story(alone, job.run_id), job.run_id
            assert laned.store.verify(job.run_id).ok
    finally:
        laned.store.close()  # type: ignore[attr-defined]
        alone.store.close()  # type: ignore[attr-defined]


def test_eight_lanes_each_holding_its_writer_still_get_a_connection_to_query(tmp_path, machine, pg_url):
    """All eight first steps meet inside their actions, so eight writers (a connection each)
    are open at once; each session then keeps its run's timer (a query beside its writer).
    A pool of 8, the store's default, would leave them all waiting for a ninth."""
    home = Home(tmp_path / "h", store=pg_url).ensure()
    meeting = threading.Barrier(8, timeout=20)
    acts.MEET = lambda run_id: meeting.wait()
    try:
        outcomes = Driver(home, threads=8, clock=FakeClock(START)).drive(
            [Launch(machine, {"n": i}, run_id=f"r{i}") for i in range(8)])
        assert [o.status if isinstance(o, RunState) else repr(o) for o in outcomes] == ["waiting"] * 8
        assert not meeting.broken
    finally:
        home.store.close()  # type: ignore[attr-defined]
