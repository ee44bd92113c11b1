"""The PostgreSQL store's tables: created and migrated by Ratchet, versioned.

Each `pg_migrations/NNNN_name.sql` is one version; `ratchet_schema_version` lists the
versions applied. `migrate` applies the missing ones in one transaction under an
advisory lock (two processes starting at once: one migrates, the other waits and finds
it done). A schema newer than this Ratchet knows is refused rather than misread.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg

from journal.errors import JournalError

MIGRATIONS = Path(__file__).with_name("pg_migrations")


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every migration shipped, in order."""
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        found.append((int(path.name.split("_", 1)[0]), path.read_text()))
    return found


LATEST = migrations()[-1][0]


def lock_key(schema: str, name: str) -> int:
    """A signed 64-bit advisory-lock key for `name` in `schema` (keys are per database)."""
    digest = hashlib.blake2b(f"ratchet\0{schema}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def current_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The schema's version (0: no Ratchet tables yet)."""
    exists = conn.execute("SELECT to_regclass('ratchet_schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM ratchet_schema_version").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def applied(conn: psycopg.Connection[tuple[object, ...]]) -> set[int]:
    """The versions applied to the schema (none: no Ratchet tables yet)."""
    exists = conn.execute("SELECT to_regclass('ratchet_schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {int(row[0]) for row in conn.execute("SELECT version FROM ratchet_schema_version")}  # type: ignore[call-overload]


def migrate(conn: psycopg.Connection[tuple[object, ...]], schema: str, where: str) -> tuple[int, int]:
    """Bring the schema to LATEST: apply every shipped version not applied yet, in order (also one
    below the highest applied: versions made on parallel branches may land out of order).
    Returns (version before, version after)."""
    before = current_version(conn)
    if before > LATEST:
        raise JournalError(f"{where}: schema version {before} is newer than this Ratchet knows ({LATEST}); "
                           "upgrade Ratchet")
    missing = {version for version, _ in migrations()} - applied(conn)
    if not missing:
        return before, before
    before = min(before, min(missing) - 1)  # a gap below the highest applied: the schema was as old as it
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(schema, "migrate")])
        conn.execute("CREATE TABLE IF NOT EXISTS ratchet_schema_version ("
                     "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = applied(conn)  # another process may have migrated while we waited
        for version, script in migrations():
            if version not in done:
                conn.execute(script.encode())  # several statements, no parameters: one simple query
                conn.execute("INSERT INTO ratchet_schema_version (version) VALUES (%s)", [version])
    return before, LATEST
