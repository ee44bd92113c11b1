"""The engine's error tree: one base class, a few leaves with structured attributes.

Messages read `where: what; hint`, so the CLI can print them as one line. Journal errors
(`journal.JournalError` and its leaves, such as `JournalLockedError` when another process
advances a run) are not wrapped: they already say where and what, and the CLI shows both
families alike.

    EngineError
    ├── DefinitionError ── NotAMachineError     machine files and modules
    ├── ImportPathError                         a `module:attribute` that does not resolve
    ├── UnknownRunError, RunExistsError         run ids
    ├── WaitTimeoutError                        `Ratchet.wait` gave up (also a TimeoutError)
    ├── ReplayError, ConditionError             a run that cannot go on as written
    ├── ClockError                              $RATCHET_CLOCK_FILE (tests)
    └── UnsafeInboxError, InvalidMessageError   the inbox and its files
"""

from __future__ import annotations

from pathlib import Path

from engine.problem import Problem


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


# --- Definitions ------------------------------------------------------------------------


class DefinitionError(EngineError):
    """A machine definition is invalid. `problems` lists every error (and warning) found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors or self.problems))


class NotAMachineError(DefinitionError):
    """A Python file given as a machine defines no module attribute `machine`."""


class ImportPathError(EngineError):
    """A `module:attribute` import path (action, predicate, exception) does not resolve."""

    def __init__(self, import_path: str, reason: str) -> None:
        self.import_path = import_path
        self.reason = reason
        super().__init__(f"{import_path}: {reason}")


# --- Runs ---------------------------------------------------------------------------------


class UnknownRunError(EngineError):
    """No journal exists for this run id."""

    def __init__(self, run_id: str, where: str = "") -> None:
        self.run_id = run_id
        super().__init__(f"{where or 'runs'}: no run '{run_id}'; list runs with 'ratchet status'")


class RunExistsError(EngineError):
    """`start --id` named a run that exists with another machine."""

    def __init__(self, run_id: str, machine: str, wanted: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run '{run_id}' already exists with machine '{machine}', not '{wanted}'; "
            "choose another --id"
        )


class WaitTimeoutError(EngineError, TimeoutError):
    """`Ratchet.wait` timed out before the run got where it was asked to (a TimeoutError too,
    so `except TimeoutError` catches it). `status` and `state` are where the run stood."""

    def __init__(self, run_id: str, until: str, timeout: float, status: str, state: str) -> None:
        self.run_id, self.until, self.timeout, self.status, self.state = run_id, until, timeout, status, state
        super().__init__(f"run '{run_id}': still {status} in '{state}' after {timeout:g}s, not {until}; "
                         "is `ratchet supervise` running? (wait longer, or see 'ratchet status')")


class ReplayError(EngineError):
    """A journal that decodes and chains but does not make sense as a run (e.g. a step in a
    state its pinned definition lacks): damage, or a bug; never guessed around."""

    def __init__(self, run_id: str, record: object, cause: Exception) -> None:
        self.run_id = run_id
        self.seq = getattr(record, "seq", None)
        kind = type(record).__name__
        super().__init__(
            f"run '{run_id}': record #{self.seq} ({kind}) does not fit the run "
            f"({type(cause).__name__}: {cause}); run 'ratchet verify {run_id}' and inspect it"
        )


class JournalFormatError(ReplayError):
    """A journal written by a newer Ratchet (its `run_started` has a greater `format`):
    refused whole, never half understood."""

    def __init__(self, run_id: str, found: int, known: int) -> None:
        self.run_id, self.seq, self.found, self.known = run_id, 1, found, known
        EngineError.__init__(self, f"run '{run_id}': journal format {found} is newer than this "
                                   f"Ratchet reads ({known}); upgrade Ratchet to read it")


class ConditionError(EngineError):
    """A transition's condition (or unless) raised instead of answering True or False."""

    def __init__(self, state: str, trigger: str, cause: Exception) -> None:
        self.state, self.trigger = state, trigger
        super().__init__(f"a condition of '{trigger}' from '{state}' raised "
                         f"{type(cause).__name__}: {cause}; fix the predicate, then resolve")


class ClockError(EngineError):
    """The clock file ($RATCHET_CLOCK_FILE, a test hook) does not hold a time."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        super().__init__(f"{path}: {text[:40]!r} is not an ISO 8601 time; "
                         "write one like 2026-03-02T09:00:00Z")


# --- The inbox ----------------------------------------------------------------------------


class UnsafeInboxError(EngineError):
    """An inbox folder is a symlink or not a directory: files could be moved out of the inbox."""

    def __init__(self, path: object, what: str) -> None:
        self.path = path
        super().__init__(f"{path}: {what}; inbox folders must be real directories "
                         "(replace it with a directory, then start again)")


class InvalidMessageError(EngineError):
    """An inbox file refused before delivery. `reason` is one short line, `detail` more
    (the supervisor files both beside the refused file, which is the `where`)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
