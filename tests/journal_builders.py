"""Journal records for tests, each in one short call: a run's first record and a step's usual batch."""

from __future__ import annotations

from typing import Any

from journal import Record, RunStarted, StepStarted, StepSucceeded, Transition, hash_definition


def run_started(run_id: str = "r1", machine: str = "m", *, version: int = 1, definition: Any = None,
                **fields: Any) -> RunStarted:
    """A `run_started` pinning `definition` (by default `{"name": machine}`) with its real hash.

    Other fields (`input`, `by`, `ts`, `format`, ...) pass through; so does `definition_hash`,
    for a test that wants one that does not match.
    """
    if definition is None:
        definition = {"name": machine}
    fields.setdefault("definition_hash", hash_definition(definition))
    return RunStarted(run_id=run_id, machine=machine, version=version, definition=definition, **fields)


def step_batch(state: str, dest: str | None = None, *, key: str, trigger: str = "ok", attempt: int = 1,
               **succeeded: Any) -> list[Record]:
    """A step that succeeded, as the engine writes it: step_started, step_succeeded, transition.

    `dest` defaults to `state` (a self-loop); `succeeded` holds the step_succeeded's other
    fields (`data`, `duration_ms`).
    """
    return [
        StepStarted(state=state, attempt=attempt, idempotency_key=key),
        StepSucceeded(state=state, attempt=attempt, trigger=trigger, **succeeded),
        Transition(trigger=trigger, source=state, dest=state if dest is None else dest),
    ]


def story(records: list[Any]) -> list[Any]:
    """A journal's records without its seals (engine.run.sealing): what the run did.

    Tests of how a run moves compare this; tests of sealing read the seals themselves."""
    return [r for r in records if type(r).__name__ != "Sealed"]
