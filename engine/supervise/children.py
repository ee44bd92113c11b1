"""Fan-out under the supervisor: tell a parent when its children end; cancel unwanted children.

The supervisor folds every run in its table, children included. When a child's journal
shows it ended, its parent is advanced with that child named (`hints`): the parent's
runner reads the child's journal and journals `child_finished` once (engine.run.children
explains why the parent reads rather than being sent a message). Hints are kept until
the parent's own journal counts the child, so a parent job that dies or is killed is
simply given them again; a supervisor that starts finds the children that ended while
nobody watched when it folds the parent.

A parent that leaves its spawning state early (an `any` or quorum join, a timeout, a
trigger from outside) without `let_finish`, or is cancelled, lists its live children as
unwanted (`RunState.unwanted`): each gets a cancel in the inbox, written once per
supervisor and only while the child has not ended — a cancel like any other, so a
child mid-step has its worker killed and its `on_cancel` runs.
"""

from __future__ import annotations

import logging

from engine.home import Home
from engine.run.replay import RunState
from engine.run.status import RunStatus
from engine.supervise.runs import RunTable
from engine.trust.sender import ENGINE

log = logging.getLogger("ratchet.supervisor")


def _waiting_parent(state: RunState) -> bool:
    brood = state.brood
    return brood is not None and brood.state == state.state and state.status == RunStatus.WAITING


def _ends(parent: RunState, child: RunState) -> bool:
    """Does the parent count `child` as ended? (An escalated child, only if its spawn says
    `escalated_children: fail`.)"""
    if child.ended:
        return True
    if child.status != RunStatus.ESCALATED:
        return False
    spawn = parent.definition["states"].get(parent.state, {}).get("spawn") or {}
    return bool(spawn.get("escalated_children") == "fail")


class Family:
    """Which parents must look at which ended children, and which cancels were written."""

    def __init__(self, home: Home, runs: RunTable) -> None:
        self.home = home
        self.runs = runs
        self._ended: dict[str, dict[str, None]] = {}  # parent -> ended children it has not journaled yet
        self._asked_at: dict[str, int] = {}  # parent -> its last seq when it was last given hints
        self._cancelled: set[str] = set()  # children a cancel was written for (by this supervisor)

    def consider(self, run_id: str, state: RunState) -> list[str]:
        """The parents to advance now that `run_id` (now `state`) changed; writes the cancels
        its journal asks for."""
        ready: list[str] = []
        if state.parent is not None and (state.ended or state.status == RunStatus.ESCALATED):
            parent = self.runs.get(state.parent)
            brood = parent.state.brood if parent is not None and not parent.broken else None
            if (parent is not None and brood is not None and run_id in brood.started and run_id not in brood.ended
                    and _ends(parent.state, state)):
                self._ended.setdefault(state.parent, {})[run_id] = None
                if _waiting_parent(parent.state) and self._asked_at.get(state.parent) != parent.state.last_seq:
                    ready.append(state.parent)
        if _waiting_parent(state):
            if self._note_ended_children(run_id, state):
                ready.append(run_id)
        elif state.brood is None:
            self._ended.pop(run_id, None)
            self._asked_at.pop(run_id, None)
        if state.unwanted:
            self._cancel(run_id, state)
        return ready

    def hints(self, parent: str, last_seq: int) -> tuple[str, ...] | None:
        """The children to name in the parent's next advance (None: none known)."""
        ended = self._ended.get(parent)
        if not ended:
            return None
        self._asked_at[parent] = last_seq
        return tuple(ended)

    # --- parents -----------------------------------------------------------------------------

    def _note_ended_children(self, parent_id: str, parent: RunState) -> bool:
        """Bring the parent's hints up to date with the table (drop what its journal counts,
        add live children that ended, seen or not); True if it should be advanced for them.

        Looks at every live child each time the parent changes: a child may have ended
        while the parent was mid-session (not waiting) or while no supervisor ran."""
        brood = parent.brood
        if brood is None:
            return False
        ended = self._ended.setdefault(parent_id, {})
        for child in list(ended):
            if child in brood.ended or child not in brood.started:
                del ended[child]
        for child in brood.live:
            tracked = self.runs.get(child) or self.runs.refresh(child)  # just created: fold it now
            if tracked is not None and not tracked.broken and _ends(parent, tracked.state):
                ended[child] = None
        if not ended:
            return False
        if self._asked_at.get(parent_id) == parent.last_seq:
            # Its last advance was given these and recorded nothing: do not spin on it.
            log.warning("run %s: children %s ended but its advance did not record them; trying again at "
                        "its next change", parent_id, ", ".join(ended))
            return False
        return True

    # --- cancels -----------------------------------------------------------------------------

    def _cancel(self, parent_id: str, parent: RunState) -> None:
        why = "was cancelled" if parent.status == RunStatus.CANCELLED else "no longer waits for it"
        for child in parent.unwanted:
            if child in self._cancelled:
                continue
            tracked = self.runs.get(child) or self.runs.refresh(child)
            if tracked is None or tracked.broken or tracked.state.ended:
                if tracked is not None:
                    self._cancelled.add(child)  # ended (or damaged): nothing to cancel
                continue
            self._cancelled.add(child)
            from engine.supervise.message import Message, write_message  # pydantic: only when a child is cancelled

            try:
                write_message(self.home, Message(run=child, cancel=True, by=ENGINE,
                                                 reason=f"its parent {parent_id} {why}"))
            except OSError as exc:
                self._cancelled.discard(child)
                log.error("run %s: cannot write the cancel of its child %s: %s; trying again later",
                          parent_id, child, exc)
                continue
            log.info("run %s: cancelling its child %s (the parent %s)", parent_id, child, why)
