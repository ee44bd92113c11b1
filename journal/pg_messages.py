"""The PostgreSQL store's messages table (`ratchet_messages`, migration 0002): journal.messages on rows.

A post is one transaction: the row, inserted unless its key is there already (`ON CONFLICT
DO NOTHING`: posting again after a crash inserts nothing), and a NOTIFY on the store's
message channel, sent at commit, so every supervisor sharing the store looks at once.
Settling a row (delivered, refused) notifies too: the host that posted it files its inbox
file. The rows are hints and a record for people; the run's journal is what decides
whether a message was applied (its key is the `source_file` of the decision record).

Settled rows are kept for people, then deleted by `expire` (the retention, migration 0005): a
batch of the oldest settled rows, found by a partial index on `settled_at` and locked with
`FOR UPDATE SKIP LOCKED`, so two supervisors expiring at once take different rows and never
wait for each other. Queued rows are never in a batch. `forget_settled` deletes an archived
run's settled rows (`ratchet archive`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from journal.messages import MessageState, Posted, Posting
from journal.store import Watch

if TYPE_CHECKING:
    from journal.pg_store import PgStore

_COLUMNS = ("id, key, run_id, body, format, answers, posted_by, verified_by, via, problem, attestation, state, reason,"
            " posted_at")


def channel(store: PgStore) -> str:
    """The channel messages are announced on (beside the journals' own)."""
    return f"{store.channel}_m"


def post(store: PgStore, posting: Posting) -> bool:
    """Insert `posting` unless its key is there; True if this call inserted it."""
    p = posting
    try:
        with store.pool().connection() as conn, conn.transaction():
            inserted = conn.execute(
                "INSERT INTO ratchet_messages (key, run_id, body, format, answers, posted_by, verified_by, via,"
                " problem, attestation) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                [p.key, p.run_id, p.body, p.format, p.answers, p.posted_by, p.verified_by, p.via, p.problem,
                 p.attestation]).rowcount == 1
            if inserted:
                conn.execute("SELECT pg_notify(%s, %s)", [channel(store), p.run_id])
    except psycopg.OperationalError as exc:
        raise store._unreachable(exc) from exc
    return inserted


def queued(store: PgStore) -> list[Posted]:
    """Every message not settled yet, in order of arrival."""
    rows = store._query(f"SELECT {_COLUMNS} FROM ratchet_messages WHERE state = 'queued' ORDER BY id")
    return [_posted(row) for row in rows]


def queued_keys(store: PgStore) -> list[str]:
    """The keys of the messages not settled yet (no bodies: what a dashboard polls)."""
    return [str(row[0]) for row in store._query("SELECT key FROM ratchet_messages WHERE state = 'queued'")]


def settle(store: PgStore, key: str, accepted: bool, reason: str) -> bool:
    """Mark a queued message delivered or refused (False: settled already, or no such key)."""
    try:
        with store.pool().connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE ratchet_messages SET state = %s, reason = %s, settled_at = now()"
                " WHERE key = %s AND state = 'queued' RETURNING run_id",
                ["delivered" if accepted else "refused", None if accepted else reason, key]).fetchone()
            if row is not None:
                conn.execute("SELECT pg_notify(%s, %s)", [channel(store), row[0]])
    except psycopg.OperationalError as exc:
        raise store._unreachable(exc) from exc
    return row is not None


def states(store: PgStore, keys: Iterable[str]) -> dict[str, tuple[MessageState, str | None]]:
    """How each of `keys` stands (keys with no row are left out)."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = store._query("SELECT key, state, reason FROM ratchet_messages WHERE key = ANY(%s)", [wanted])
    return {str(key): (state, reason) for key, state, reason in rows}


def expire(store: PgStore, before: datetime, limit: int) -> int:
    """Delete at most `limit` settled rows settled before `before`, the oldest first: how many."""
    return store._execute(
        "DELETE FROM ratchet_messages WHERE id IN (SELECT id FROM ratchet_messages"
        " WHERE state <> 'queued' AND settled_at < %s ORDER BY settled_at LIMIT %s FOR UPDATE SKIP LOCKED)",
        [before, limit])


def forget_settled(conn: psycopg.Connection[Any], run_id: str) -> int:
    """Delete the settled rows of `run_id` (archived); its queued ones stay, to be refused."""
    return conn.execute("DELETE FROM ratchet_messages WHERE run_id = %s AND state <> 'queued'", [run_id]).rowcount


def watch(store: PgStore, on_post: Callable[[str], None]) -> Watch:
    from journal.pg_watch import NotifyWatch  # a thread and a connection of its own

    return NotifyWatch(store.url, channel(store), on_post, where=store.location)


def _posted(row: tuple[Any, ...]) -> Posted:
    (id_, key, run_id, body, format_, answers, posted_by, verified_by, via, problem, attestation, state,
     reason, posted_at) = row
    posting = Posting(key=key, run_id=run_id, body=bytes(body), format=format_, answers=answers,
                      posted_by=posted_by, verified_by=verified_by, via=via, problem=problem,
                      attestation=attestation)
    return Posted(id=int(id_), posting=posting, state=state, reason=reason, posted_at=posted_at)
