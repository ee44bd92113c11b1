"""What an action receives (`StepContext`) and may return (`Fire`).

An action is `def action(ctx) -> None | str | dict | Fire`: None fires `ok`, a string
fires that trigger, a dict is merged into the run's data and fires `ok`, and
`Fire(trigger, data)` does both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fire:
    """An action's explicit result: fire `trigger`, merging `data` into the run's data."""

    trigger: str
    data: dict[str, Any] | None = None


@dataclass
class StepContext:
    """One call of one action. `idempotency_key` is the same across retries and restarts
    of the same step (f"{run_id}/{state}/{visit}"): pass it to the services you call."""

    run_id: str
    machine: str
    state: str
    attempt: int
    idempotency_key: str
    input: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    escalation: dict[str, Any] | None = None  # set only for on_escalate: reason, detail, seq
    _heartbeat: Callable[[], None] | None = field(default=None, repr=False)

    def heartbeat(self) -> None:
        """Tell the supervisor this step is alive (a long action calls it now and then).

        Under `ratchet supervise` a step's `timeout` counts from the attempt's start or
        from its last heartbeat, whichever is later: an action that calls this now and
        then is not killed as hung; one that stops is killed `timeout` after its last
        call. Cheap to call often: at most one heartbeat a second reaches the supervisor,
        and it never blocks. In `ratchet run` (the foreground, no supervisor) it does
        nothing, as no timeout is enforced there.
        """
        if self._heartbeat is not None:
            self._heartbeat()
