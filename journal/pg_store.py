"""The PostgreSQL store: each run's journal as rows, the same bytes as the file store.

    ratchet_runs(run_id, last_seq, head, change, txid, owner, owner_pid, lease_until, archived)
    ratchet_records(run_id, seq, line)      one row per record: its exact JSON line
    ratchet_side_files(kind, name, data)    escalation tickets and the like
    ratchet_timers(run_id, due_at, seq, ...)  resting runs' deadlines, claimed by supervisors (journal.pg_timers)

Opened by `journal.open_store("postgresql://...")`; the tables are created (or migrated)
on first use in the schema the connection's `search_path` names (journal.pg_schema).
Ownership and appends: journal.pg_writer. `read` from a cursor checks that the row at the
cursor's seq still hashes to the cursor's head (a journal replaced or cut is refused).

`changes` must not miss an append whose transaction took its `change` number before a
later one but committed after the call: its cursor is (the highest change seen, the
oldest transaction still running then), and the next call also reports every run last
changed by a transaction at or after that one. `watch` is LISTEN/NOTIFY, `follow` polls.

A store opens a small connection pool in each process that uses it (after a fork, the
child opens its own: connections are never shared across processes).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from journal import pg_messages
from journal.durable import own_tmp, publish
from journal.errors import JournalError, JournalLockedError, JournalNotFoundError, JournalReplacedError
from journal.messages import MessageState, Posted, Posting
from journal.pg_group import GroupCommit
from journal.pg_schema import lock_key, migrate
from journal.pg_timers import PgTimers
from journal.pg_writer import Conn, LeaseKeeper, PgWriter
from journal.reader import decode_line, line_hash, parse
from journal.records import GENESIS, AnyRecord
from journal.seal import KIND as SEALS
from journal.store import Changes, Chunk, Cursor, Durability, Watch, check_run_id
from journal.verify import VerifyResult, require_run_end, verify_lines
from journal.writer import utc_now

DEFAULT_LEASE = 30.0  # seconds: how long a silent owner keeps its runs (RATCHET_PG_LEASE overrides)
TAKEOVER_WAIT = 5.0  # seconds to wait for an expired owner's session to end once told to

# Owning a run and letting it go: one call each (functions of migration 0004).
OWN = "SELECT locked, created, last_seq, head FROM ratchet_own(%s, %s, %s, %s, %s, %s, %s)"
RELEASE = "SELECT ratchet_release(%s, %s, %s)"


def lease_seconds() -> float:
    raw = os.environ.get("RATCHET_PG_LEASE", "")
    if not raw:
        return DEFAULT_LEASE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise JournalError(f"RATCHET_PG_LEASE={raw!r}: not a number of seconds; hint: e.g. 30")
    return value


def redacted(url: str) -> str:
    """The URL for people: no password, and the schema if it is not the default."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise JournalError(f"store: not a PostgreSQL URL ({_first_line(exc)}); "  # the URL may hold a password
                           "hint: postgresql://USER@HOST:PORT/DATABASE") from exc
    host = str(info.get("host", "") or "localhost")
    socket_dir = host.startswith("/")
    place = ("" if socket_dir else host) + (f":{info['port']}" if info.get("port") else "")
    user = f"{info['user']}@" if info.get("user") else ""
    text = f"postgresql://{user}{place}/{info.get('dbname', '')}"
    query = [f"host={host}"] if socket_dir else []
    schema = re.search(r"search_path\s*=\s*([A-Za-z0-9_]+)", str(info.get("options", "")))
    if schema:
        query.append(f"schema={schema.group(1)}")
    return f"{text}?{'&'.join(query)}" if query else text


class PgStore:
    """Journals as rows of a PostgreSQL database (see the module's docstring)."""

    def __init__(self, url: str, *, home: Path | None = None, durability: Durability = "fsync",
                 lease: float | None = None, pool_size: int = 8) -> None:
        self.url = url
        self.home = Path(home) if home is not None else None  # side files are also copied here
        self.location = redacted(url)
        self.durability = durability
        self.lease = lease if lease is not None else lease_seconds()
        self._pool_size = pool_size
        self._pool: ConnectionPool[Conn] | None = None
        self._pid = -1
        self._guard = threading.Lock()
        self._schema = ""
        self._keeper = LeaseKeeper(self.lease)
        self._group: GroupCommit | None = None  # this process's batches of appends (journal.pg_group)
        self._group_pid = -1
        self._host = socket.gethostname()
        self.timers = PgTimers(self._query, self._execute, lease=self.lease)  # deadlines supervisors claim

    # --- connections --------------------------------------------------------------------

    def _configure(self, conn: Conn) -> None:
        if self.durability == "none":
            conn.execute("SET synchronous_commit = off")

    def pool(self) -> ConnectionPool[Conn]:
        """This process's pool, opened (and the schema migrated) on first use."""
        if self._pool is not None and self._pid == os.getpid():
            return self._pool
        with self._guard:
            if self._pool is None or self._pid != os.getpid():
                try:
                    with psycopg.connect(self.url, autocommit=True) as conn:
                        row = conn.execute("SELECT current_schema()").fetchone()
                        if row is None or row[0] is None:
                            raise JournalError(f"{self.location}: no schema to create Ratchet's tables in; "
                                               "hint: set search_path (options=-csearch_path=NAME)")
                        self._schema = str(row[0])
                        migrate(conn, self._schema, self.location)
                except psycopg.OperationalError as exc:
                    raise JournalError(f"{self.location}: cannot connect ({_first_line(exc)}); "
                                       "hint: is the server running, and the URL right?") from exc
                # A pool inherited through fork is the parent's: left alone, never closed here.
                self._pool = ConnectionPool(self.url, min_size=1, max_size=self._pool_size, open=True,
                                            kwargs={"autocommit": True}, configure=self._configure,
                                            name=f"ratchet-{os.getpid()}")
                self._pid = os.getpid()
        return self._pool

    def reserve(self, writers: int) -> None:
        """Make room in this process's pool for `writers` writers open at once (each holds a
        connection while it owns its run) and a query beside each (engine.run.concurrent's
        lanes): without it, 8 lanes holding 8 writers wait for a 9th connection forever."""
        with self._guard:
            wanted = 2 * writers + 1
            if wanted <= self._pool_size:
                return
            self._pool_size = wanted
            if self._pool is not None and self._pid == os.getpid():
                self._pool.resize(self._pool.min_size, wanted)

    def _query(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        try:
            with self.pool().connection() as conn:
                return conn.execute(query, params).fetchall()
        except psycopg.OperationalError as exc:  # the server went away, or no connection came in time
            raise self._unreachable(exc) from exc

    def _execute(self, query: Any, params: Any = None) -> int:
        try:
            with self.pool().connection() as conn:
                return conn.execute(query, params).rowcount
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: BaseException) -> JournalError:
        return JournalError(f"{self.location}: the database did not answer ({_first_line(exc)}); "
                            "hint: is the server running, and reachable from here?")

    @property
    def channel(self) -> str:
        self.pool()
        return f"ratchet_{lock_key(self._schema, 'channel') & 0xFFFFFFFFFFFF:x}"

    def _run_key(self, run_id: str) -> int:
        self.pool()
        return lock_key(self._schema, run_id)

    def init(self) -> tuple[int, int]:
        """Create or migrate the tables now (`ratchet db init`): (version before, after)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT current_schema()").fetchone()
            return migrate(conn, str(row[0]) if row else "public", self.location)

    def close(self) -> None:
        """Close this process's pool (writers still open lose their connection)."""
        with self._guard:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None

    # --- runs ---------------------------------------------------------------------------

    def where(self, run_id: str) -> str:
        return f"{self.location}/runs/{check_run_id(run_id)}"

    def run_ids(self) -> list[str]:
        return [row[0] for row in self._query("SELECT run_id FROM ratchet_runs WHERE NOT archived ORDER BY run_id")]

    def exists(self, run_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM ratchet_runs WHERE run_id = %s AND NOT archived",
                                [check_run_id(run_id)]))

    def writer(self, run_id: str, *, create: bool = False) -> PgWriter:
        """Own the run (see journal.pg_writer): JournalLockedError while another writer holds it.
        One round trip when the run is free (`ratchet_own`: lock, claim, and create if asked)."""
        check_run_id(run_id)
        pool = self.pool()
        key = self._run_key(run_id)
        try:
            conn = pool.getconn()
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from exc
        owner = f"{self._host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        try:
            try:
                # A session lock outlives a failed statement: unless the call said the lock is
                # held elsewhere, it may be ours now, and is let go on any failure.
                row = self._claim(conn, run_id, key, owner, create, try_lock=True)
                if row is None:  # held: by a live writer (locked), or by one whose lease ran out
                    self._lock_run(conn, run_id, key)
                    row = self._claim(conn, run_id, key, owner, create, try_lock=False)
                if row is None:  # cannot be: with try_lock false, the call does not lock
                    raise JournalLockedError(self.where(run_id), run_id)
                return self._own(conn, run_id, key, owner, create, row)
            except JournalLockedError:
                raise
            except BaseException:
                if not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("SELECT pg_advisory_unlock(%s)", [key])
                raise
        except psycopg.OperationalError as exc:
            pool.putconn(conn)  # a broken connection is discarded by the pool
            raise self._unreachable(exc) from exc
        except BaseException:
            pool.putconn(conn)
            raise

    def _claim(self, conn: Conn, run_id: str, key: int, owner: str, create: bool, *,
               try_lock: bool) -> tuple[Any, ...] | None:
        """`ratchet_own` (migration 0004): None if the lock is held elsewhere; else (True,
        created, last_seq, head), or (True,) alone if the run is not there to own."""
        rows = conn.execute(OWN, [run_id, key, owner, self.lease, create, GENESIS, try_lock]).fetchall()
        if rows and not rows[0][0]:
            return None
        return rows[0] if rows else (True,)

    def _lock_run(self, conn: Conn, run_id: str, key: int) -> None:
        """Take the lock `_claim` found held, if its owner's lease ran out (a frozen or cut-off
        host): end that owner's session first."""
        ended = conn.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l, ratchet_runs r"
            " WHERE r.run_id = %s AND r.lease_until < now() AND l.pid = r.owner_pid AND l.locktype = 'advisory'"
            " AND l.granted AND l.objsubid = 1 AND l.classid::bigint = %s AND l.objid::bigint = %s"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [run_id, (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF]).fetchall()
        if ended:
            deadline = time.monotonic() + TAKEOVER_WAIT
            while time.monotonic() < deadline:
                if _fetch_bool(conn, "SELECT pg_try_advisory_lock(%s)", [key]):
                    return
                time.sleep(0.01)
        raise JournalLockedError(self.where(run_id), run_id)

    def _own(self, conn: Conn, run_id: str, key: int, owner: str, create: bool, row: tuple[Any, ...]) -> PgWriter:
        """The writer of a run just claimed (`row`: what `_claim` returned)."""
        if len(row) == 1:
            if create:
                raise JournalError(f"{self.where(run_id)}: run '{run_id}' is archived; choose another id")
            raise JournalNotFoundError(self.where(run_id), run_id)
        writer = PgWriter(run_id=run_id, conn=conn, owner=owner, created=bool(row[1]), last_seq=int(row[2]),
                          head=str(row[3]), lease=self.lease, group=self.group(), where=self.where(run_id),
                          release=self._release(key), clock=utc_now)
        self._keeper.add(writer)
        return writer

    def group(self) -> GroupCommit:
        """This process's group commit: the appends of its writers that wait together go together
        (a forked child starts its own: the parent's may be mid-batch)."""
        channel = self.channel  # opens the pool first (under the same guard)
        with self._guard:
            if self._group is None or self._group_pid != os.getpid():
                self._group = GroupCommit(channel=channel, lease=self.lease, seal_kind=SEALS)
                self._group_pid = os.getpid()
            return self._group

    def _release(self, key: int) -> Callable[[PgWriter], None]:
        pool_pid = os.getpid()

        def release(writer: PgWriter) -> None:
            self._keeper.remove(writer)
            if os.getpid() != pool_pid:
                return  # a forked child's copy: the connection is the parent's
            conn = writer.conn
            try:
                # The lease ends with the writer (no owner: no session for a taker to end);
                # not durable by itself, like the claim (migration 0004).
                conn.execute(RELEASE, [writer.run_id, writer.owner, key])
            except psycopg.Error:
                conn.close()  # its session ends, and the lock with it; the pool drops it
            pool = self._pool
            if pool is not None and self._pid == pool_pid:
                pool.putconn(conn)
            else:
                conn.close()

        return release

    def held(self, run_id: str) -> bool:
        """A writer holds the run's lock and its lease runs (a probe of pg_locks: takes nothing)."""
        key = self._run_key(check_run_id(run_id))
        rows = self._query(
            "SELECT 1 FROM pg_locks l, ratchet_runs r WHERE r.run_id = %s AND r.lease_until > now()"
            " AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [run_id, (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF])
        return bool(rows)

    def read(self, run_id: str, after: Cursor | None = None) -> Chunk:
        check_run_id(run_id)
        start = after.seq if after is not None else 0
        rows = self._query("SELECT seq, line FROM ratchet_records WHERE run_id = %s AND seq >= %s"
                           " AND NOT EXISTS (SELECT 1 FROM ratchet_runs WHERE run_id = %s AND archived)"
                           " ORDER BY seq", [run_id, max(start, 1), run_id])
        if not rows and not self.exists(run_id):
            raise JournalNotFoundError(self.where(run_id), run_id)
        head = GENESIS
        if after is not None and after.seq > 0:
            if not rows or rows[0][0] != after.seq or line_hash(rows[0][1]) != after.head:
                raise JournalReplacedError(self.where(run_id), after.seq,
                                           "is not the journal read before (replaced, cut or edited)")
            head = after.head
            rows = rows[1:]
        lines = [bytes(line) for _, line in rows]
        body = b"\n".join(lines) + b"\n" if lines else b""
        contents = parse(self.where(run_id), body, last_seq=start, last_hash=head)
        return Chunk(contents.records, Cursor(contents.last_seq, contents.last_hash))

    def changes(self, since: tuple[int, int] | None = None) -> Changes:
        seen, oldest = since if since is not None else (-1, 0)
        rows = self._query(
            "WITH x AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)"
            " SELECT x.xmin, r.run_id, r.change FROM x LEFT JOIN ratchet_runs r"
            " ON NOT r.archived AND (r.change > %s OR r.txid >= %s::text::xid8)", [seen, str(oldest)])
        xmin = int(rows[0][0])
        changed = sorted(row[1] for row in rows if row[1] is not None)
        top = max([seen, *(int(row[2]) for row in rows if row[2] is not None)])
        return Changes(changed, (top, xmin))

    def watch(self, on_change: Callable[[str], None]) -> Watch:
        from journal.pg_watch import NotifyWatch  # a thread and a connection of its own

        return NotifyWatch(self.url, self.channel, on_change, where=self.location)

    def follow(self, run_id: str, *, poll_interval: float = 0.1,
               stop: Callable[[], bool] | None = None) -> Iterator[tuple[bytes, AnyRecord]]:
        if not self.exists(run_id):
            raise JournalNotFoundError(self.where(run_id), run_id)
        return self._follow(run_id, poll_interval, stop)

    def _follow(self, run_id: str, poll_interval: float,
                stop: Callable[[], bool] | None) -> Iterator[tuple[bytes, AnyRecord]]:
        seq = 0
        where = self.where(run_id)
        while True:
            rows = self._query("SELECT seq, line FROM ratchet_records WHERE run_id = %s AND seq > %s ORDER BY seq",
                               [run_id, seq])
            for number, raw in rows:
                line = bytes(raw)
                seq += 1
                if number != seq:
                    raise JournalError(f"{where}: record {seq} is missing while being followed; run 'ratchet verify'")
                yield line, decode_line(where, seq, line)
            if stop is not None and stop():
                return
            time.sleep(poll_interval)

    def _lines(self, run_id: str, archived: bool) -> list[bytes]:
        """A journal's lines, each with its newline (JournalNotFoundError if it is not there)."""
        check_run_id(run_id)
        found = self._query("SELECT 1 FROM ratchet_runs WHERE run_id = %s AND archived = %s", [run_id, archived])
        if not found:
            raise JournalNotFoundError(self.where(run_id), run_id)
        rows = self._query("SELECT line FROM ratchet_records WHERE run_id = %s ORDER BY seq", [run_id])
        return [bytes(row[0]) + b"\n" for row in rows]

    def lines(self, run_id: str) -> list[bytes]:
        """A journal's exact bytes, line by line (`ratchet export`)."""
        return self._lines(run_id, archived=False)

    def verify(self, run_id: str, *, head: str | None = None) -> VerifyResult:
        return verify_lines(self._lines(run_id, archived=False), self.where(run_id), run_id=run_id, head=head)

    # --- side files ---------------------------------------------------------------------

    def locate(self, kind: str, name: str) -> str:
        return f"{self.location}/{check_run_id(kind)}/{check_run_id(name)}"

    def publish(self, kind: str, name: str, data: bytes, *, sync: bool = True) -> str:
        """The row is the truth (committed; durable at once unless `sync` is false); the home's
        `<kind>/<name>` gets a copy, for people who watch that folder on this host (another
        host that withdraws it removes only its own copy)."""
        where = self.locate(kind, name)
        # sync=False (a seal's copy): committed without waiting for the disk, as the file store
        # skips its fsync; a server crash may keep the previous row, never a torn one.
        self._execute("INSERT INTO ratchet_side_files (kind, name, data)"
                      " SELECT %s, %s, %s FROM (SELECT set_config('synchronous_commit', CASE WHEN %s"
                      " THEN current_setting('synchronous_commit') ELSE 'off' END, true)) AS durability"
                      " ON CONFLICT (kind, name) DO UPDATE SET data = excluded.data", [kind, name, data, sync])
        if self.home is not None:
            (self.home / kind).mkdir(parents=True, exist_ok=True)
            _write_copy(self.home / kind, name, data, sync=sync)
        return where

    def fetch(self, kind: str, name: str) -> bytes | None:
        self.locate(kind, name)
        rows = self._query("SELECT data FROM ratchet_side_files WHERE kind = %s AND name = %s", [kind, name])
        return bytes(rows[0][0]) if rows else None

    def withdraw(self, kind: str, name: str) -> None:
        self.locate(kind, name)
        self._execute("DELETE FROM ratchet_side_files WHERE kind = %s AND name = %s", [kind, name])
        if self.home is not None:
            _drop_copy(self.home / kind, name)

    def tidy_copies(self, kind: str) -> list[str]:
        """Bring this host's copies of `kind` in line with the rows: a copy whose row another
        host withdrew (a ticket resolved there) is removed, one whose row another host
        rewrote is rewritten. Returns the names removed. No query while the folder is empty.

        A copy is a convenience for people watching the folder; it may lag its row until
        the next call. What is touched is looked up once more afterwards, so a row this host
        publishes meanwhile (row first, then its copy) never loses its copy."""
        if self.home is None:
            return []
        folder = self.home / check_run_id(kind)
        try:
            names = [name for name in os.listdir(folder) if not name.startswith(".")]  # .tmp: a publish in flight
        except FileNotFoundError:
            return []
        touched = self._align_copies(kind, folder, names) if names else []
        removed = [name for name in touched if not (folder / name).exists()]
        self._align_copies(kind, folder, touched, restore=True)
        return [name for name in removed if not (folder / name).exists()]

    def _align_copies(self, kind: str, folder: Path, names: list[str], *, restore: bool = False) -> list[str]:
        """Make each named copy match its row (removed if the row is gone; written back if
        `restore` and only the copy is). Returns the names it changed."""
        if not names:
            return []
        rows = {name: bytes(data) for name, data in self._query(
            "SELECT name, data FROM ratchet_side_files WHERE kind = %s AND name = ANY(%s)", [kind, names])}
        changed = []
        for name in names:
            try:
                copy: bytes | None = (folder / name).read_bytes()
            except FileNotFoundError:
                copy = None
            data = rows.get(name)
            if data is None and copy is not None:
                _drop_copy(folder, name)
                changed.append(name)
            elif data is not None and copy != data and (copy is not None or restore):
                _write_copy(folder, name, data, sync=False)
                changed.append(name)
        return changed

    # --- the archive: a flag on the run; its rows stay ------------------------------------

    def archive(self, run_id: str, *, head: str, on_step: Callable[[str], None] | None = None) -> str:
        with self.writer(run_id) as writer:  # nobody appends while it is archived
            if writer.last_hash != head:
                raise JournalError(f"{self.where(run_id)}: run '{run_id}' changed since it was verified (its chain "
                                   f"no longer ends at {head[:12]}…); verify it again")
            with writer.lock:
                done = writer.conn.execute("UPDATE ratchet_runs SET archived = true, change = nextval('ratchet_change')"
                                           " WHERE run_id = %s AND owner = %s AND head = %s",
                                           [run_id, writer.owner, head]).rowcount
            if done != 1:
                raise JournalError(f"{self.where(run_id)}: run '{run_id}' changed while it was archived; "
                                   "verify it again")
            with writer.lock:  # its settled messages go with it (a crash first: the retention deletes them)
                pg_messages.forget_settled(writer.conn, run_id)
            if on_step is not None:
                on_step("archived")
        return f"{self.location}/archive/{run_id}"

    def archived_ids(self) -> list[str]:
        return [row[0] for row in self._query("SELECT run_id FROM ratchet_runs WHERE archived ORDER BY run_id")]

    def archived_lines(self, run_id: str) -> list[tuple[bytes, AnyRecord]]:
        where = f"{self.location}/archive/{run_id}"
        return [(raw[:-1], decode_line(where, number, raw[:-1]))
                for number, raw in enumerate(self._lines(run_id, archived=True), 1)]

    def verify_archived(self, run_id: str, *, head: str | None = None) -> VerifyResult:
        lines = self._lines(run_id, archived=True)
        path = f"{self.location}/archive/{run_id}"  # a str: Path() would fold the URL's //
        return require_run_end(verify_lines(lines, path, run_id=run_id, head=head), lines)

    # --- messages: rows any supervisor delivers (journal.messages, journal.pg_messages) -----

    def post_message(self, posting: Posting) -> bool:
        return pg_messages.post(self, posting)

    def queued_messages(self) -> list[Posted]:
        return pg_messages.queued(self)

    def queued_message_keys(self) -> list[str]:
        return pg_messages.queued_keys(self)

    def settle_message(self, key: str, accepted: bool, reason: str) -> bool:
        return pg_messages.settle(self, key, accepted, reason)

    def message_states(self, keys: Iterable[str]) -> dict[str, tuple[MessageState, str | None]]:
        return pg_messages.states(self, keys)

    def watch_messages(self, on_post: Callable[[str], None]) -> Watch:
        return pg_messages.watch(self, on_post)

    def locate_message(self, key: str) -> str:
        return f"{self.location}/messages/{key}"

    def expire_messages(self, before: datetime, limit: int) -> int:
        return pg_messages.expire(self, before, limit)

    def __repr__(self) -> str:
        return f"PgStore({self.location!r})"


def _write_copy(folder: Path, name: str, data: bytes, *, sync: bool) -> None:
    """This host's file copy of a side row, replaced atomically (a dot-named temporary first:
    `tidy_copies` and people's tools skip it)."""
    publish(own_tmp(folder / name), folder / name, data, sync=sync)


def _drop_copy(folder: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(folder / name)


def _fetch_bool(conn: Conn, query: Any, params: Any) -> bool:
    row = conn.execute(query, params).fetchone()
    return bool(row and row[0])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
