"""A hold placed by a step and released by `on_cancel`, for the cancel crash tests (copied
beside their machine).

Each call appends one line to the ledger ($RATCHET_LEDGER) under an exclusive lock: its
kind, idempotency key, pid, and `effect`, true only for the first call with that key
(a service that honours idempotency keys, as a payment or booking API does). The
release then passes the crash point "mid_compensation": the test may SIGKILL it there,
after the effect, before `compensation_finished` is journaled.
"""

import fcntl
import json
import os

from engine.faults import crash_point


def _call(kind, ctx):
    fd = os.open(os.environ["RATCHET_LEDGER"], os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open(os.environ["RATCHET_LEDGER"]) as f:
            earlier = [json.loads(line) for line in f if line.strip()]
        effect = not any(e["key"] == ctx.idempotency_key and e["effect"] for e in earlier)
        line = {"kind": kind, "key": ctx.idempotency_key, "effect": effect, "pid": os.getpid()}
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def place_hold(ctx):
    _call("hold.place", ctx)


def release_hold(ctx):
    _call("hold.release", ctx)
    crash_point("mid_compensation")
