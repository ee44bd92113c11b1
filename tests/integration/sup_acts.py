"""Actions for the supervisor's integration tests (copied beside the test machine).

Every call appends one line to the ledger ($RATCHET_LEDGER) under an exclusive lock,
deduplicated by idempotency key like a real API: `effect` is true only on the first
call with a key. The run's input can make a step hang or block *after* its effect:
  hang: STATE    attempt 1 of STATE sleeps forever (a hung action)
  gate: PATH     the step blocks after its effect until PATH exists
  gate_in: STATE the state whose step the gate blocks (default: prepare)
  hang_notify: true   the first on_escalate call (`notify`) of the run sleeps forever
  pulse: PATH, pulses: N   attempt 1 of prepare, N times: waits until PATH.go<i> exists,
                 calls ctx.heartbeat(), then writes PATH.beat<i>
  pulse_hang: true    ... and then sleeps forever (a step that goes silent)
  fail_in: STATE      attempt 1 of STATE raises Flaky after its ledger line (a retry follows)
  fatal_in: STATE     STATE raises Fatal after its ledger line (non-retryable where listed)
Before blocking, the step writes `<ledger>.<run_id>.started` holding its pid.
`notify` (an on_escalate) appends one line to `<ledger>.notified`; `release` (an
on_cancel) one line to the ledger, as state "on_cancel", deduplicated by key.
"""

import fcntl
import json
import os
import time
from pathlib import Path


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def _record(ctx, state):
    """One ledger line; `effect` only on the first call with this key (like a real API)."""
    ledger = Path(os.environ["RATCHET_LEDGER"])
    fd = os.open(ledger, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        earlier = [json.loads(line) for line in ledger.read_text().splitlines() if line]
        effect = not any(e["key"] == ctx.idempotency_key and e["effect"] for e in earlier)
        line = {"key": ctx.idempotency_key, "run": ctx.run_id, "state": state,
                "attempt": ctx.attempt, "effect": effect, "pid": os.getpid()}
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
    return ledger


def release(ctx):
    _record(ctx, "on_cancel")


def work(ctx):
    ledger = _record(ctx, ctx.state)
    if ctx.input.get("fail_in") == ctx.state and ctx.attempt == 1:
        raise Flaky("try again later")
    if ctx.input.get("fatal_in") == ctx.state:
        raise Fatal("bad input")
    started = Path(f"{ledger}.{ctx.run_id}.started")
    if ctx.input.get("hang") == ctx.state and ctx.attempt == 1:
        _mark(started)
        time.sleep(3600)
    pulse = ctx.input.get("pulse")
    if pulse and ctx.state == "prepare" and ctx.attempt == 1:
        _mark(started)
        for i in range(1, ctx.input.get("pulses", 1) + 1):
            while not Path(f"{pulse}.go{i}").exists():
                time.sleep(0.01)
            ctx.heartbeat()
            _mark(Path(f"{pulse}.beat{i}"))
        if ctx.input.get("pulse_hang"):
            time.sleep(3600)
    gate = ctx.input.get("gate")
    if gate and ctx.state == ctx.input.get("gate_in", "prepare"):
        _mark(started)
        while not Path(gate).exists():
            time.sleep(0.01)
    return {ctx.state: ctx.attempt}


def notify(ctx):
    ledger = os.environ["RATCHET_LEDGER"]
    started = Path(f"{ledger}.{ctx.run_id}.started")
    if ctx.input.get("hang_notify") and not started.exists():
        _mark(started)
        time.sleep(3600)
    with open(f"{ledger}.notified", "a") as f:
        f.write(json.dumps({"key": ctx.idempotency_key, "pid": os.getpid()}) + "\n")


def _mark(path):
    # Atomic, so that a test seeing the file also sees the pid in it.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)
