"""A worker process killed (kill -9) mid-step while its supervisor lives: the supervisor
notices, replaces the worker and replays the run, whose step runs again with its key."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from journal import verify

from supervisor_harness import pid_alive
from waiting import wait_for


def parent(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def workers_of(supervisor: int) -> set[int]:
    """Pids of the supervisor's workers: the children of its forkserver (its own child)."""
    procs = {int(p.name): p for p in Path("/proc").iterdir() if p.name.isdigit()}
    parents = {}
    for pid in procs:
        try:
            parents[pid] = parent(pid)
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    children = {pid for pid, ppid in parents.items() if ppid == supervisor}
    return {pid for pid, ppid in parents.items() if ppid in children}


def test_a_worker_killed_mid_step_is_replaced_and_its_step_rerun_with_the_same_key(env):
    gate = env.dir / "gate"
    env.start("r1", gate=str(gate))
    sup = env.supervise("--workers", "1")  # its only worker: a replacement is a must
    marker = env.started_marker("r1")
    wait_for(marker.exists, what="the step to start (its effect is on the ledger)")
    victim = int(marker.read_text())
    assert victim in workers_of(sup.pid)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not pid_alive(victim), what="the worker to die")
    # No clock moves: it is the death that is noticed, not the step's timeout.
    wait_for(lambda: int(marker.read_text()) != victim, what="the step to run again in a new worker")
    rerun_by = int(marker.read_text())
    assert rerun_by in workers_of(sup.pid)
    gate.touch()
    env.wait_status("r1", "waiting", "review")
    env.send("r1", "approve")
    env.wait_status("r1", "finished", "done")
    assert sup.poll() is None  # the supervisor lived through it all

    calls = [(e["key"], e["attempt"], e["effect"], e["pid"]) for e in env.ledger_lines() if e["state"] == "prepare"]
    assert calls == [("r1/prepare/1", 1, True, victim), ("r1/prepare/1", 1, False, rerun_by)]
    records = env.records("r1")
    assert [r["idempotency_key"] for r in records if r["type"] == "step_started" and r["state"] == "prepare"] \
        == ["r1/prepare/1", "r1/prepare/1"]
    assert [(r["state"], r["attempt"], r["reason"]) for r in records if r["type"] == "step_abandoned"] \
        == [("prepare", 1, "worker died")]
    assert not [r for r in records if r["type"] == "step_failed"]
    assert verify(env.home.store.path("r1"), run_id="r1").ok
