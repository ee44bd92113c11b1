"""A run another process advances: the supervisor backs off, says so at debug level, counts it."""

from __future__ import annotations


def test_a_run_locked_by_another_process_is_counted_and_said_at_debug_level(env):
    env.start("r1")
    with env.home.store.writer("r1"):  # this process advances r1 (as a `ratchet run` would)
        held = env.cli("--debug", "supervise", "--once")
    assert held.returncode == 0, held.stderr
    log = held.stderr.decode()
    assert "run r1 is locked by another process (its advance waits 0.5s)" in log
    assert "1 jobs found their run locked by another process" in log
    assert env.row("r1").status == "running"  # untouched while held
    free = env.cli("supervise", "--once")
    assert free.returncode == 0 and env.row("r1").state == "review"
    assert b"locked by another" not in free.stderr  # nothing to say when nobody else held a run
