"""Actions whose behaviour the stateful replay test scripts (imported by its machine).

`SCRIPT` is a queue of what the next calls of `act` do, whichever state calls it; when
it is empty, `MODE` says what every call does: "ok", "flaky" (a service down for a
while) or "crash" (a process that keeps dying). `Crash` is a BaseException: it escapes
the runner as a kill -9 would, leaving the step in flight on disk. Every call is noted
in `CALLS`.
"""

from __future__ import annotations

from engine import Fire

CALLS: list[tuple[str, int, str]] = []  # (state, attempt, idempotency key)
NOTIFIED: list[str] = []  # idempotency keys of on_escalate calls
SCRIPT: list[str] = []
MODE = "ok"

OUTCOMES = ("ok", "data", "fire", "fast_track", "bogus", "not_a_result", "flaky", "fatal", "crash")


class Flaky(Exception):
    """A retryable failure."""


class Fatal(Exception):
    """Named in the machine's `non_retryable`."""


class Crash(BaseException):
    """The process dies inside the action."""


def reset() -> None:
    global MODE
    MODE = "ok"
    CALLS.clear()
    NOTIFIED.clear()
    SCRIPT.clear()


def act(ctx):
    CALLS.append((ctx.state, ctx.attempt, ctx.idempotency_key))
    what = SCRIPT.pop(0) if SCRIPT else MODE
    n = len(CALLS)
    if what == "ok":
        return None
    if what == "data":  # a tuple and a nested dict: the journal stores JSON, replay reads lists
        return {f"{ctx.state}_calls": n, "pair": (n, ctx.state), "nested": {"attempt": ctx.attempt}}
    if what == "fire":
        return Fire("ok", {"fired": n})
    if what in ("fast_track", "bogus"):  # a returned trigger: draft has `fast_track`, none has `bogus`
        return what
    if what == "not_a_result":
        return 42
    if what == "flaky":
        raise Flaky(f"call {n}: try again")
    if what == "fatal":
        raise Fatal(f"call {n}: give up")
    if what == "crash":
        raise Crash(f"call {n}")
    raise ValueError(f"unknown scripted outcome {what!r}")


def notify(ctx):
    NOTIFIED.append(ctx.idempotency_key)
