"""`RunnableMachine`: what running a run needs of its machine, and nothing more.

Planning, calling actions, refusing messages and writing tickets ask a machine a few
questions: a state's fields, which triggers leave a state, where one leads given the
run's data, and the code behind an import path. The machine that answers them is
`engine.definition.loader.Machine` (validated, with its code resolved); a test may pass
anything else that answers the same questions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.definition.pinned import PinnedState


class RunnableMachine(Protocol):
    @property
    def name(self) -> str: ...

    def state(self, name: str) -> PinnedState:
        """The state's fields; KeyError naming the machine if it has no such state."""
        ...

    def triggers_from(self, state: str) -> list[str]:
        """Triggers with a transition leaving `state`, in written order."""
        ...

    def next_state(self, state: str, trigger: str, data: dict[str, Any]) -> str | None:
        """Where `trigger` leads from `state` given `data`; None if nowhere.
        A condition that raises is a ConditionError."""
        ...

    def retryable(self, state: str, error: BaseException) -> bool:
        """False if `error` is one of the state's `non_retryable` exceptions."""
        ...

    def on_escalate(self, state: str) -> str | None:
        """The import path to notify when a run escalates in `state` (the state's, else
        the machine's), or None."""
        ...

    def resolve(self, import_path: str) -> Callable[..., Any]:
        """The object (action, predicate, notifier) an import path names.
        An ImportPathError if it no longer resolves (the code changed under the run)."""
        ...
