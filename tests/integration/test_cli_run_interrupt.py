"""Ctrl-C (SIGINT) of a real `ratchet run`: the first lets the step in flight finish and
starts no other, the second stops at once (a crash for that step), one during a retry
back-off stops at once; each says how to continue and exits 130."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from supervisor_harness import Env
from waiting import wait_for

DOWN = """
name: down
version: 1
initial: call
states:
  call: {action: run_interrupt_acts:down, retry: {attempts: 3, backoff: 1h}}
  done: {final: true}
transitions:
  - {trigger: ok, source: call, dest: done}
"""
DOWN_ACTS = '''
def down(ctx):
    raise ConnectionError("the service is down")
'''
ASKED = "ratchet: stopping after the current step; Ctrl-C again to stop now"


class Foreground:
    """One `ratchet run` subprocess, its stdout and stderr in files (read while it runs)."""

    def __init__(self, env: Env, *args: str, real_clock: bool = False) -> None:
        self.out, self.err = env.dir / "run.out", env.dir / "run.err"
        environ = dict(env.env)
        if real_clock:
            environ.pop("RATCHET_CLOCK_FILE")
        with open(self.out, "wb") as out, open(self.err, "wb") as err:  # the child keeps its own copies
            self.proc = subprocess.Popen([sys.executable, "-c", "from engine.cli import main; main()", "run", *args],
                                         cwd=env.dir, env=environ, stdout=out, stderr=err)

    def ctrl_c(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def stdout(self) -> list[str]:
        return self.out.read_text().splitlines()

    def stderr(self) -> str:
        return self.err.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def shop(env: Env, machine_dir: Path):
    (machine_dir / "down.yaml").write_text(DOWN)
    (machine_dir / "run_interrupt_acts.py").write_text(DOWN_ACTS)
    started: list[Foreground] = []

    def run(*args: str, **kw) -> Foreground:
        started.append(Foreground(env, *args, **kw))
        return started[-1]

    env.run_in_foreground = run
    yield env
    for fg in started:
        fg.close()


def gated_in(env: Env, state: str) -> Foreground:
    gate = env.dir / "gate"
    fg = env.run_in_foreground(str(env.machine.with_name("shop.yaml")), "--id", "r1",
                               "--input", f"gate={gate}", "--input", f"gate_in={state}")
    wait_for(env.started_marker("r1").exists, what=f"step '{state}' to be in flight")
    return fg


def types(env: Env) -> list[str]:
    return [r["type"] for r in env.records("r1")]


def test_ctrl_c_finishes_the_current_step_starts_no_other_and_says_how_to_continue(shop):
    fg = gated_in(shop, "reserve")
    fg.ctrl_c()
    wait_for(lambda: ASKED in fg.stderr(), what="the promise to stop after the step")
    (shop.dir / "gate").touch()  # only now may the step end
    assert fg.proc.wait(20) == 130
    assert types(shop) == ["run_started", "step_started", "step_succeeded", "transition"]
    assert fg.stdout()[-1] == "run r1: stopped before its step in 'charge'; nothing in flight"
    assert f"next: ratchet run {shop.machine.with_name('shop.yaml')} --id r1 continues it" in fg.stderr()

    again = shop.cli("run", str(shop.machine.with_name("shop.yaml")), "--id", "r1")
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode().splitlines()[-1] == "run r1: finished in 'done'"
    effects = Counter((e["key"], e["effect"]) for e in shop.ledger_lines())
    assert effects == {(f"r1/{s}/1", True): 1 for s in ("reserve", "charge", "ship", "receipt")}


def test_a_second_ctrl_c_stops_at_once_leaving_the_step_in_flight(shop):
    fg = gated_in(shop, "charge")  # not idempotent
    fg.ctrl_c()
    wait_for(lambda: ASKED in fg.stderr(), what="the promise to stop after the step")
    fg.ctrl_c()
    assert fg.proc.wait(20) == 130  # the gate never opened: it did not wait for the step
    assert types(shop)[-1] == "step_started"
    assert fg.stdout()[-1] == ("run r1: stopped mid-step in 'charge' (attempt 1): its outcome is unknown; "
                               "continuing escalates it as 'unknown outcome' (the state is not idempotent)")
    assert "Traceback" not in fg.stderr() and "--id r1 continues it" in fg.stderr()

    again = shop.cli("run", str(shop.machine.with_name("shop.yaml")), "--id", "r1")
    assert again.returncode == 0, again.stderr
    assert "escalated in 'charge': unknown outcome" in again.stdout.decode()


def test_ctrl_c_during_a_retry_back_off_stops_at_once(shop):
    fg = shop.run_in_foreground(str(shop.machine.with_name("down.yaml")), "--id", "r1", real_clock=True)
    wait_for(lambda: shop.home.store.exists("r1") and "retry_scheduled" in types(shop),
             what="the run to sleep an hour before its retry")
    fg.ctrl_c()
    assert fg.proc.wait(20) == 130
    said = fg.stdout()[-1]
    assert said.startswith("run r1: stopped waiting to retry 'call' (attempt 2 due ")
    assert said.endswith("; nothing in flight")
    assert "--id r1 continues it" in fg.stderr()  # (the press may come just before the sleep)
    assert types(shop)[-1] == "retry_scheduled"
