"""The state graph of one machine as a real `transitions.Machine`: triggers and guards only.

Ratchet asks it one question, "from this state, where does this trigger lead, given the
run's data?", and acts on the answer itself after journaling it. So the machine has no
callbacks, no timers (durable deadlines are the supervisor's, in the journal), no
`to_<state>()` back doors, and holds no run: one probe model is placed in the asked state
(`set_state`, which fires no callbacks) for each question.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transitions import Machine as _TransitionsMachine

if TYPE_CHECKING:
    from engine.definition.pinned import PinnedSpec
    from engine.definition.spec import MachineSpec

Predicate = Callable[[dict[str, Any]], bool]


class _Probe:
    """The model a question is asked on: a plain object (transitions sets `state` on it,
    and adds one method per trigger, which `trigger(name)` dispatches to)."""

    state: str
    trigger: Callable[..., bool]


class Statechart:
    """Answers `next_state` with `transitions`; predicates come from `resolve(import_path)`."""

    def __init__(self, spec: MachineSpec | PinnedSpec, resolve: Callable[[str], Predicate]) -> None:
        self._machine = _TransitionsMachine(
            model=None,
            states=list(spec.states),
            initial=spec.initial,
            transitions=[
                {
                    "trigger": t.trigger,
                    "source": "*" if t.source == ["*"] else t.source,
                    "dest": t.dest,
                    "conditions": [_guard(resolve(p)) for p in t.conditions],
                    "unless": [_guard(resolve(p)) for p in t.unless],
                }
                for t in spec.transitions
            ],
            auto_transitions=False,  # no to_<state>() back doors
            send_event=True,  # guards receive the event, whose kwargs carry `data`
            ignore_invalid_triggers=True,  # "no transition" is an answer, not an error
        )
        self._probe = _Probe()
        self._machine.add_model(self._probe, initial=spec.initial)
        self._lock = threading.Lock()  # one probe, asked one question at a time

    def next_state(self, state: str, trigger: str, data: dict[str, Any]) -> str | None:
        """The destination, or None if no transition for `trigger` leaves `state` or its
        guards fail. A guard that raises propagates (the caller decides what that means)."""
        with self._lock:
            self._machine.set_state(state, model=self._probe)
            moved = self._probe.trigger(trigger, data=data)
            return self._probe.state if moved else None


def _guard(predicate: Predicate) -> Callable[[Any], bool]:
    # transitions compares a guard's result with `== True`: give it a real bool.
    def guard(event: Any) -> bool:
        return bool(predicate(event.kwargs.get("data", {})))

    guard.__name__ = getattr(predicate, "__name__", "guard")
    return guard
