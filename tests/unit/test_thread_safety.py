"""What the lanes of a concurrent driver (engine.run.concurrent) share, used from many
threads at once: each fix is shown by threads racing on it, with Python's switch interval
made tiny so that a read-modify-write left unlocked is interleaved within the test.

Audited and safe as they are (no test here): the journal lock (a `flock` per open file
description: a second lane's writer of a run is refused, as another process's is), each
lane's own Runner, Sealer and RunCache, `Statechart` (locks its probe), `logging` (its
handlers lock), the definition caches (`load_file`'s and `Machine`'s: a dict set, at worst
built twice), and the PostgreSQL store's pool, lease keeper and writers (locked).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from engine import faults
from engine.definition import loader
from engine.errors import DefinitionError
from engine.home import Home
from engine.run.clock import FakeClock, FileClock, parse_iso
from engine.run.sealing import home_key
from journal import FileStore
from journal.keys import key_id

THREADS = 8


@pytest.fixture(autouse=True)
def _tiny_switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def race(work: Callable[[int], None], threads: int = THREADS) -> None:
    """Run `work(n)` in `threads` threads released together; re-raise the first failure."""
    start = threading.Barrier(threads, timeout=20)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


def test_a_fake_clock_advanced_by_many_lanes_counts_every_advance():
    clock = FakeClock("2026-01-05T09:00:00Z")
    race(lambda n: [clock.advance(1) for _ in range(3000)])
    assert clock.now() == parse_iso("2026-01-05T09:00:00Z").replace(hour=15, minute=40)  # 24,000 s later


def test_crash_points_reached_by_many_lanes_are_each_counted(monkeypatch):
    monkeypatch.setenv(faults.CRASH_AT_ENV, "elsewhere:1")  # count, never die
    faults.reset()
    try:
        race(lambda n: [faults.crash_point("after_append") for _ in range(3000)])
        assert faults._counts["after_append"] == THREADS * 3000  # so "die at the n-th" means the n-th
    finally:
        faults.reset()


def test_a_file_clock_set_by_many_lanes_at_once(tmp_path):
    clock = FileClock(tmp_path / "clock")
    clock.set(parse_iso("2026-01-05T09:00:00Z"))
    race(lambda n: [clock.sleep(1) for _ in range(100)])  # each its own temporary file: none lost mid-rename
    assert clock.now() > parse_iso("2026-01-05T09:00:00Z")


def test_a_side_file_published_by_many_lanes_is_always_one_whole_version(tmp_path):
    """Two lanes may keep the same run's seal at once (it is kept after the run's lock is let
    go): each version is written whole under a name of its own, then renamed."""
    store = FileStore(tmp_path)
    versions = [bytes([65 + n]) * (100 + 1000 * n) for n in range(THREADS)]  # lengths differ: a mix shows
    race(lambda n: [store.publish("seals", "r1", versions[n], sync=False) for _ in range(50)])
    assert store.fetch("seals", "r1") in versions
    assert sorted(p.name for p in (tmp_path / "seals").iterdir()) == ["r1"]  # no temporary left


def test_the_home_key_made_by_many_lanes_at_once_is_one_key(tmp_path):
    home = Home(tmp_path / "h").ensure()
    ids: list[str] = []
    race(lambda n: ids.append(key_id(home_key(home))))
    assert len(set(ids)) == 1
    assert sorted(p.name for p in (home.root / "keys").iterdir()) == ["home.key", "home.pub"]


def test_a_spawn_check_in_one_thread_is_not_skipped_because_another_is_loading_that_file(tmp_path):
    """The guard against a machine spawning itself (files being loaded) is per thread: a
    lane validating a parent must still check its child while another lane loads that child."""
    (tmp_path / "child.yaml").write_text("name: child\nversion: 1\ninitial: nowhere\nstates: {}\n")  # invalid
    parent = tmp_path / "parent.yaml"
    parent.write_text("name: parent\nversion: 1\ninitial: fan\nstates:\n"
                      "  fan: {spawn: {machine: child, for_each: items}, timeout: 1h}\n"
                      "  done: {final: true}\n"
                      "transitions:\n  - {trigger: joined, source: fan, dest: done}\n")
    elsewhere_loading = threading.Event()
    checked = threading.Event()

    def other_lane() -> None:  # mid-way through loading child.yaml, as another lane may be
        loader._spawn_loading.files.add(str((tmp_path / "child.yaml").resolve()))
        elsewhere_loading.set()
        checked.wait(20)

    other = threading.Thread(target=other_lane)
    other.start()
    try:
        assert elsewhere_loading.wait(20)
        with pytest.raises(DefinitionError, match="spawn machine 'child'"):
            loader.load_file(parent)
    finally:
        checked.set()
        other.join()
