"""`ratchet report`: one run as one self-contained HTML page (its story, its diagram with
the path taken, and the journal's verification), for an auditor who opens it offline.

Everything is read through the home's store (live runs, then the archive), never from
paths, so a report looks the same on every store. The page has no script and loads
nothing: CSS is inline, the diagram is inline SVG, and a Content-Security-Policy forbids
any fetch. Templates are Jinja2 with autoescaping on: journal text (comments, data,
errors) is whatever people and actions wrote, and must render as text.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.run.clock import clock_from_env
from engine.run.status import RunStatus
from engine.view import diagram
from engine.view.story import Story, span, tell, when
from journal import AnyRecord, JournalError, Store

if TYPE_CHECKING:
    import jinja2
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from journal.seal import SealCheck
    from journal.verify import VerifyResult


class UnknownRunError(EngineError):
    """The store holds no such run, live or archived."""


def render_report(store: Store, run_id: str, *, now: datetime | None = None,
                  public: Ed25519PublicKey | None = None) -> str:
    """The standalone page of one run."""
    return environment().get_template("report.html").render(**run_context(store, run_id, now=now, public=public))


def run_context(store: Store, run_id: str, *, now: datetime | None = None,
                public: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """What the run's page shows (the report, and the dashboard's run page). `public`: the
    key the journal's seals must be made by (engine.run.sealing.home_public_key), as
    `ratchet verify` checks them; None when the home has no key."""
    from journal.seal import fetch_seal

    now = now or clock_from_env().now()
    try:
        side = fetch_seal(store, run_id)  # before the journal is read: never ahead of it
    except ValueError:
        side = None  # damaged: `ratchet verify` says so; the page checks the journal's own seals
    verdict, archived = _verify(store, run_id)
    try:  # a journal that fails its check is still shown, as far as it can be read
        records, unreadable = _records(store, run_id, archived), None
    except JournalError as exc:
        records, unreadable = [], str(exc)
    seals = _seals(records, run_id, public, side) if verdict.ok and not unreadable else None
    story = tell(run_id, records, now=now)
    run = story.run
    svg = diagram.render(run.definition, taken=story.taken, visited=story.visited, current=run.state or None,
                         escalated=run.status == RunStatus.ESCALATED) if run.definition else ""
    return {
        "run_id": run_id, "story": story, "run": run, "archived": archived,
        "verdict": verdict, "verdict_fields": _fields(verdict), "seals": seals, "diagram": svg,
        "where": store.where(run_id), "generated": now.astimezone(UTC), "unreadable": unreadable,
        "counts": _counts(story), "linked": False,  # the dashboard's run page links runs to each other
    }


@cache
def environment() -> jinja2.Environment:
    """The templates (package data of engine.view), autoescaped, with the view's filters."""
    import jinja2  # lazy: only the report and the dashboard need it

    env = jinja2.Environment(loader=jinja2.PackageLoader("engine.view", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["span"] = span
    return env



def _verify(store: Store, run_id: str) -> tuple[VerifyResult, bool]:
    """The journal's check, and whether it is archived (live runs first, as `tail` does)."""
    if store.exists(run_id):
        return store.verify(run_id), False
    if run_id in store.archived_ids():
        return store.verify_archived(run_id), True
    raise UnknownRunError(f"no run '{run_id}' in {store.location}; see 'ratchet status --all'")


def _seals(records: list[AnyRecord], run_id: str, public: Ed25519PublicKey | None,
           side: Any) -> SealCheck | None:
    """The seals' verdict, as `ratchet verify` gives it; None for a journal with no seal and no
    key to expect one from (nothing to say)."""
    from journal.seal import check

    sealed = check(records, run_id, public, side)
    return sealed if sealed.sealed or not sealed.ok or public is not None else None


def _records(store: Store, run_id: str, archived: bool) -> list[AnyRecord]:
    if archived:
        return [record for _, record in store.archived_lines(run_id)]
    return list(store.read(run_id).records)


def _fields(verdict: VerifyResult) -> list[tuple[str, str]]:
    """Every field the verification has (a store or a later version may add some: seals)."""
    values = dataclasses.asdict(verdict) if dataclasses.is_dataclass(verdict) else dict(vars(verdict))
    return [(name, "" if value is None else str(value)) for name, value in values.items()]


def _counts(story: Story) -> dict[str, int]:
    """How many of what an auditor looks for first: `{"escalation": 1, ...}` (singular names)."""
    kinds = [entry.kind for entry in story.entries]
    return {
        "failed attempt": kinds.count("step_failed"),
        "retry": kinds.count("retry_scheduled"),
        "escalation": kinds.count("escalated"),
        "resolution": kinds.count("resolved"),
        "refused message": kinds.count("trigger_refused"),
    }
