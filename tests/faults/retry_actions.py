"""An action that always fails, for the retry crash tests (copied beside their machine).

Each call first appends one line to the ledger ($RATCHET_LEDGER): its idempotency key,
attempt and pid — one `os.write` on an O_APPEND file, so a kill right after it keeps
it. Then it passes the crash point "mid_action" (the test may SIGKILL it there, after
the call is on record) and fails with a retryable error.
"""

import json
import os

from engine.faults import crash_point


class Unavailable(Exception):
    """The service is down: worth another attempt."""


def always_fails(ctx):
    line = {"key": ctx.idempotency_key, "attempt": ctx.attempt, "pid": os.getpid()}
    fd = os.open(os.environ["RATCHET_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
    crash_point("mid_action")
    raise Unavailable(f"service down (attempt {ctx.attempt})")
