"""Stopping a real `ratchet supervise`: SIGTERM lets the step in flight finish and starts no
other; a second signal, or kill -9, is a crash (a non-idempotent step cut off escalates).

The machine: four steps, the second (`charge`) not idempotent. A step blocks on a gate
file after its effect is on the ledger, so the test decides when it ends: after the signal.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from supervisor_harness import Env, pid_alive
from waiting import wait_for

STEPS = ("reserve", "charge", "ship", "receipt")
GRACE = 20.0


@pytest.fixture
def shop(env: Env) -> Env:
    """A home whose machine folder holds `shop` (tests/integration/supervisor_harness.py)."""
    return env


def in_flight(env: Env, run_id: str, state: str) -> int:
    """Start the run gated in `state`; once that step is in flight, its worker's pid."""
    env.start(run_id, machine="shop", gate=str(env.dir / "gate"), gate_in=state)
    marker = env.started_marker(run_id)
    wait_for(marker.exists, what=f"step '{state}' to be in flight")
    return int(marker.read_text())


def types(env: Env, run_id: str) -> list[str]:
    return [r["type"] for r in env.records(run_id)]


def calls(env: Env) -> Counter:
    return Counter((e["key"], e["effect"]) for e in env.ledger_lines())


@pytest.mark.parametrize("to", ["supervisor", "group"])
def test_sigterm_finishes_the_step_in_flight_starts_no_other_and_a_restart_finishes_once(shop, to):
    """`group`: every process gets it, as systemd's default KillMode sends it, in the worst
    order: the forkserver (which it kills) and the workers before the supervisor."""
    sup = shop.supervise("--grace", str(GRACE))
    worker = in_flight(shop, "s2", "reserve")  # the NEXT step, charge, is not idempotent
    signalled = time.monotonic()
    if to == "group":
        forkserver = parent(worker)
        for pid in family(sup.pid)[1:]:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(forkserver), what="the forkserver to die")
    sup.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping on SIGTERM" in shop.log(), what="the supervisor to say it stops")
    assert "1 in flight (s2)" in shop.log()
    (shop.dir / "gate").touch()  # only now may the step end
    assert sup.wait(GRACE) == 0
    assert time.monotonic() - signalled < GRACE
    assert not pid_alive(worker)

    # The step's outcome and transition are journaled, and nothing after them.
    assert types(shop, "s2") == ["run_started", "step_started", "step_succeeded", "transition"]
    assert calls(shop) == {("s2/reserve/1", True): 1}
    assert "1 finished their step (s2 before 'charge'); none killed" in shop.log()

    result = shop.once()
    assert result.returncode == 0, result.stderr
    assert shop.row("s2").status == "finished"
    assert "escalated" not in types(shop, "s2") and list(shop.home.escalations.iterdir()) == []
    assert types(shop, "s2").count("step_started") == len(STEPS)
    assert calls(shop) == {(f"s2/{step}/1", True): 1 for step in STEPS}  # each effect exactly once


def parent(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def family(pid: int) -> list[int]:
    """`pid` and all its descendants (its forkserver, resource tracker and workers): what a
    SIGTERM to its whole group reaches (it shares the test's group: each is sent one by pid)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = parent(int(entry.name))
            except OSError:
                continue  # exited meanwhile
    found = [pid]
    for elder in found:
        found += [child for child, ppid in parents.items() if ppid == elder]
    return found


def test_kill_9_in_the_non_idempotent_step_is_a_crash_and_escalates_unknown_outcome(shop):
    sup = shop.supervise()
    worker = in_flight(shop, "s2", "charge")
    sup.send_signal(signal.SIGKILL)
    sup.wait(10)
    wait_for(lambda: not pid_alive(worker), what="the worker to die with its supervisor")
    (shop.dir / "gate").touch()
    result = shop.once()
    assert result.returncode == 0, result.stderr
    row = shop.row("s2")
    assert (row.status, row.state, row.escalation) == ("escalated", "charge", "unknown outcome")
    assert calls(shop) == {("s2/reserve/1", True): 1, ("s2/charge/1", True): 1}  # never called again


def test_a_second_signal_stops_at_once_killing_the_step_as_a_crash(shop):
    sup = shop.supervise("--grace", str(GRACE))
    worker = in_flight(shop, "s2", "charge")
    sup.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping on SIGTERM" in shop.log(), what="the supervisor to say it stops")
    sup.send_signal(signal.SIGINT)
    assert sup.wait(GRACE / 2) == 128 + signal.SIGINT  # the gate never opened: it did not wait
    assert not pid_alive(worker)
    log = shop.log()
    assert "stopping now at a second signal: killing 1 busy worker (s2): a crash for that run" in log
    assert "killed 1 mid-step (s2)" in log
    assert types(shop, "s2")[-1] == "step_started"  # charge in flight, outcome unknown
    (shop.dir / "gate").touch()
    assert shop.once().returncode == 0
    assert (shop.row("s2").status, shop.row("s2").escalation) == ("escalated", "unknown outcome")
    assert calls(shop) == {("s2/reserve/1", True): 1, ("s2/charge/1", True): 1}
