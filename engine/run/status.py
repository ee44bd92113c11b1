"""`RunStatus`: where a run stands, as replay folds it from the journal.

A `StrEnum`, so a status compares equal to its name as text (`status == "waiting"`), is
written as that text by `json` and in f-strings, and `ratchet status --json` is unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"      # something is owed now: a step, a transition, a decision
    WAITING = "waiting"      # for a trigger from outside (the inbox), maybe until a deadline
    RETRYING = "retrying"    # a failed step's next attempt is due at `deadline`
    ESCALATED = "escalated"  # parked until a human resolves it (retry, skip, abort)
    FINISHED = "finished"    # reached a final state
    CANCELLED = "cancelled"  # ended by `cancel` or an `abort` resolution
