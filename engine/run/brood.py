"""A parent's children in its current spawning state, as its journal says (folded by replay).

`spawned` records add children (started, in order); `child_finished` records end them
(once each: a child already ended is never counted twice, whatever a crash repeats).
A new visit of the state starts a new brood; resolving an escalation (`retry`) keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Brood:
    """The children of one visit of a spawning state."""

    state: str
    visit: int
    total: int  # children the spawn makes in all
    started: dict[str, str] = field(default_factory=dict)  # child id -> key (index or branch), start order
    ended: dict[str, str] = field(default_factory=dict)  # child id -> "finished" | "cancelled" | "escalated"
    finished: int = 0
    cancelled: int = 0  # children that ended otherwise: cancelled, or escalated (`escalated_children: fail`)

    @property
    def live(self) -> list[str]:
        """Children started and not ended, in start order."""
        return [child for child in self.started if child not in self.ended]

    def end(self, child: str, status: str) -> bool:
        """Count a child's end; False if it was counted already (or is not one of these)."""
        if child not in self.started or child in self.ended:
            return False
        self.ended[child] = status
        if status == "finished":
            self.finished += 1
        else:
            self.cancelled += 1
        return True

    def summary(self) -> str:
        """`3/5 finished, 1 failed, 1 live` — what status and the timeline say of it."""
        parts = [f"{self.finished}/{self.total} finished"]
        if self.cancelled:
            parts.append(f"{self.cancelled} failed")
        live = len(self.started) - len(self.ended)
        if live:
            parts.append(f"{live} live")
        waiting = self.total - len(self.started)
        if waiting:
            parts.append(f"{waiting} not started")
        return ", ".join(parts)
