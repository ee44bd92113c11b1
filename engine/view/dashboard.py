"""The dashboard's list of runs: status rows (exactly `ratchet status`'s, from
`engine.supervise.status`), filtered, counted, and the choices each filter offers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine.supervise.status import StatusRow

SHOWN = 500  # rows on one page; the counts and filters still cover every run


@dataclass(frozen=True)
class Filters:
    """What the dashboard's form asks for (empty: any)."""

    status: str = ""
    machine: str = ""
    state: str = ""
    waiting_on: str = ""  # a person among the approvers of a waiting run
    overdue: bool = False
    escalated: bool = False

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        def flag(name: str) -> bool:
            return query.get(name, "") not in ("", "0", "false", "off")

        return cls(status=query.get("status", ""), machine=query.get("machine", ""), state=query.get("state", ""),
                   waiting_on=query.get("waiting_on", ""), overdue=flag("overdue"), escalated=flag("escalated"))

    def keep(self, row: StatusRow) -> bool:
        return ((not self.status or row.status == self.status)
                and (not self.machine or row.machine == self.machine)
                and (not self.state or row.state == self.state)
                and (not self.waiting_on or self.waiting_on in (row.approvers or []))
                and (not self.overdue or row.overdue_s is not None)
                and (not self.escalated or row.status == "escalated"))


@dataclass
class Listing:
    """One page of the dashboard: the counts of every run, the rows that pass the filters."""

    total: int
    counts: dict[str, int]
    overdue: int
    stalled: int
    rows: list[StatusRow]
    matched: int
    choices: dict[str, list[str]] = field(default_factory=dict)


def listing(rows: list[StatusRow], filters: Filters) -> Listing:
    kept = [row for row in rows if filters.keep(row)]
    kept.sort(key=lambda row: row.updated, reverse=True)  # newest first within each group below
    kept.sort(key=_urgency)
    return Listing(
        total=len(rows),
        counts=dict(Counter(str(row.status) for row in rows).most_common()),
        overdue=sum(row.overdue_s is not None for row in rows),
        stalled=sum(row.stalled for row in rows),
        rows=kept[:SHOWN], matched=len(kept),
        choices={
            "status": sorted({str(row.status) for row in rows}),
            "machine": sorted({row.machine for row in rows if row.machine}),
            "state": sorted({row.state for row in rows if row.state}),
            "waiting_on": sorted({name for row in rows for name in row.approvers or []}),
        })


_ORDER = {"escalated": 0, "damaged": 1, "retrying": 2, "running": 3, "waiting": 4, "starting": 5}


def _urgency(row: StatusRow) -> tuple[Any, ...]:
    """What needs a person first: escalated, damaged, retrying..., and within each the overdue."""
    return (_ORDER.get(str(row.status), 9), row.overdue_s is None)
