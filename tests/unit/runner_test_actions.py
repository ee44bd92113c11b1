"""Scriptable actions for the runner's unit tests (imported by machines in tmp_path).

`SCRIPT[state]` is a list of what successive calls do: a return value, or one of the
exceptions below (raised). `Die` is a BaseException: it escapes the runner like a crash
would, leaving the step in flight.
"""

CALLS: list[tuple[str, int, str]] = []  # (state, attempt, idempotency key)
NOTIFIED: list[tuple[str, dict]] = []
COMPENSATED: list[tuple[str, str, int]] = []  # on_cancel calls: (idempotency key, state, attempt)
SCRIPT: dict[str, list] = {}


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


class Die(BaseException):
    pass


def reset() -> None:
    CALLS.clear()
    NOTIFIED.clear()
    COMPENSATED.clear()
    SCRIPT.clear()


def step(ctx):
    CALLS.append((ctx.state, ctx.attempt, ctx.idempotency_key))
    script = SCRIPT.get(ctx.state)
    what = script.pop(0) if script else None
    if isinstance(what, BaseException) or (isinstance(what, type) and issubclass(what, BaseException)):
        raise what
    return what


def notify(ctx):
    NOTIFIED.append((ctx.idempotency_key, dict(ctx.escalation)))


def release_hold(ctx):
    """An on_cancel: release what the run held."""
    COMPENSATED.append((ctx.idempotency_key, ctx.state, ctx.attempt))


def release_review(ctx):
    """A state's own on_cancel (beats the machine's)."""
    COMPENSATED.append((ctx.idempotency_key, f"review:{ctx.state}", ctx.attempt))


def broken_release(ctx):
    COMPENSATED.append((ctx.idempotency_key, ctx.state, ctx.attempt))
    raise RuntimeError("hold service down")


def broken_notify(ctx):
    raise RuntimeError("mail server down")


def big_enough(data):
    return data.get("amount", 0) >= 100


def raising_condition(data):
    return data["missing"] > 0  # KeyError: a predicate with a bug


def meddling_condition(data):
    data.setdefault("touched_by_a_guard", True)  # must not reach the run's data
    return True
