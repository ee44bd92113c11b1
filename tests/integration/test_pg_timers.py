"""The PostgreSQL store's timers (journal.pg_timers): what the Runner writes, and the claim.

On the session's private server: a run at rest with a deadline has exactly one timer row
(its deadline, on the engine's clock, and the journal's seq), a run that moves on has none;
two claimants never take the same row, a claim runs out after the lease, an older writer
never overwrites or clears a newer row, and the claim is one range scan of the due_at index.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.runner import Runner
from engine.supervise.message import Message
from journal import pg_schema
from journal.pg_store import PgStore
from journal.pg_timers import CLAIM, CLEAR, ENSURE, RELEASE, SET

from waiting import wait_for

WAITING = """
name: waits
version: 1
initial: review
states:
  review: {approvers: [alice], timeout: 1h}
  done: {final: true}
  expired: {final: true, outcome: expired}
transitions:
  - {trigger: approve, source: review, dest: done}
  - {trigger: timeout, source: review, dest: expired}
"""

RETRYING = """
name: retries
version: 1
initial: call
states:
  call:
    action: flaky_call:call
    retry: {attempts: 3, backoff: 10m, max_backoff: 1h, factor: 1, jitter: false}
  done: {final: true}
transitions:
  - {trigger: ok, source: call, dest: done}
"""

FLAKY = '''
def call(ctx):
    if ctx.attempt == 1:
        raise RuntimeError("down")
'''

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(pg_url: str):
    s = PgStore(pg_url, lease=1.0)
    yield s
    s.close()


def rows(url: str) -> dict[str, tuple[datetime, int, str | None]]:
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT run_id, due_at, seq, claimed_by FROM ratchet_timers").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in found}


def runner(tmp_path: Path, pg_url: str, clock: FakeClock) -> Runner:
    machines = tmp_path / "machines"
    machines.mkdir(exist_ok=True)
    (machines / "waits.yaml").write_text(WAITING)
    (machines / "retries.yaml").write_text(RETRYING)
    (machines / "flaky_call.py").write_text(FLAKY)
    return Runner(Home(tmp_path / "home", store=pg_url).ensure(), clock=clock, machines_dir=machines)


def test_the_runner_keeps_a_timer_while_a_run_rests_with_a_deadline_and_clears_it_after(tmp_path: Path,
                                                                                       pg_url: str) -> None:
    clock = FakeClock(T0)
    r = runner(tmp_path, pg_url, clock)
    waiting = r.launch("waits", run_id="w1")
    assert rows(pg_url) == {"w1": (T0 + timedelta(hours=1), waiting.last_seq, None)}  # the engine's clock

    r.deliver("w1", Message(run="w1", trigger="approve", by="alice"))
    assert rows(pg_url) == {}  # moved on: no timer

    retrying = r.launch("retries", run_id="c1")  # attempt 1 fails: the retry is due in 10 minutes
    assert retrying.status == "retrying"
    assert rows(pg_url) == {"c1": (T0 + timedelta(minutes=10), retrying.last_seq, None)}
    clock.advance(600)
    assert r.advance("c1").status == "finished"
    assert rows(pg_url) == {}

    r.launch("waits", run_id="w2")
    clock.advance(3600)
    assert r.advance("w2").outcome == "expired"
    assert rows(pg_url) == {}


def test_two_claimants_never_take_the_same_timer_and_a_claim_runs_out_after_the_lease(store: PgStore,
                                                                                     pg_url: str) -> None:
    timers = store.timers
    for i in range(10):
        timers.set(f"r{i}", T0 + timedelta(seconds=i), seq=5)
    timers.set("later", T0 + timedelta(hours=1), seq=5)
    now = T0 + timedelta(minutes=1)
    a = timers.claim(now, "A", 4)
    b = timers.claim(now, "B", 100)
    assert [d.run_id for d in a] == ["r0", "r1", "r2", "r3"]  # earliest first
    assert sorted(d.run_id for d in b) == [f"r{i}" for i in range(4, 10)]  # the rest; not the one not due
    assert timers.claim(now, "C", 100) == []  # all claimed, and their claims still run
    assert {run: claimed for run, (_, _, claimed) in rows(pg_url).items()} == (
        {f"r{i}": "A" for i in range(4)} | {f"r{i}": "B" for i in range(4, 10)} | {"later": None})

    assert timers.release("B") == 6  # B stops: its claims are free at once
    assert sorted(d.run_id for d in timers.claim(now, "C", 100)) == [f"r{i}" for i in range(4, 10)]
    wait_for(lambda: timers.claim(now, "D", 100), timeout=10, what="the claims of A and C to run out")
    timers.set("r0", T0, seq=6)  # its writer set it again: the claim ends with it
    assert rows(pg_url)["r0"][2] is None


def test_an_older_writer_never_overwrites_or_clears_a_newer_timer(store: PgStore, pg_url: str) -> None:
    timers = store.timers
    timers.set("r1", T0, seq=10)
    timers.set("r1", T0 - timedelta(hours=1), seq=7)  # late: it read the journal before seq 10
    assert rows(pg_url)["r1"][:2] == (T0, 10)
    timers.clear("r1", seq=9)
    assert "r1" in rows(pg_url)
    assert timers.ensure([("r1", T0 + timedelta(days=1), 12), ("r2", T0, 3)]) == 1  # only the missing one
    assert rows(pg_url)["r1"][:2] == (T0, 10)
    timers.clear("r1", seq=10)
    assert "r1" not in rows(pg_url)


def test_the_claim_is_a_range_scan_of_the_due_index_not_a_scan_of_every_timer(store: PgStore, pg_url: str) -> None:
    store.timers.set("warm-up", T0, seq=1)  # creates the tables
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # 50,000 runs at rest, their deadlines spread over a month; 20 of them due now.
        conn.execute("INSERT INTO ratchet_timers (run_id, due_at, seq) SELECT 'r' || i,"
                     " %s::timestamptz + (i || ' minutes')::interval, 3 FROM generate_series(1, 50000) AS i", [T0])
        conn.execute("ANALYZE ratchet_timers")
        now = T0 + timedelta(minutes=20)
        plan = "\n".join(row[0] for row in conn.execute(  # EXPLAIN alone plans, runs nothing
            "EXPLAIN " + CLAIM, {"now": now, "limit": 4, "owner": "A", "lease": 30.0}).fetchall())
        assert "Index Scan using ratchet_timers_due on ratchet_timers" in plan, plan
        assert "Seq Scan on ratchet_timers" not in plan, plan
    assert len(store.timers.claim(now, "A", 100)) == 21  # the 20 due and the warm-up


@pytest.mark.parametrize("statement", ["set", "clear", "claim", "release", "ensure"])
def test_timer_statements_commit_without_waiting_for_the_disk(store: PgStore, pg_url: str, statement: str) -> None:
    """The journal is durable first; a timer a server crash loses is repaired from it. (Each
    statement here writes a row: one that writes nothing commits nothing to wait for.)"""
    store.timers.set("r1", T0, seq=1)
    if statement == "release":
        assert store.timers.claim(T0, "A", 1)
    with psycopg.connect(pg_url) as conn, conn.transaction():
        run = {"set": (SET, ["r1", T0, 2]), "clear": (CLEAR, ["r1", 1]), "release": (RELEASE, ["A"]),
               "claim": (CLAIM, {"now": T0, "limit": 1, "owner": "A", "lease": 1.0}),
               "ensure": (ENSURE, [["r2"], [T0], [1]])}
        assert conn.execute(*run[statement]).rowcount == 1
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)


def test_a_version_below_the_highest_applied_is_still_applied(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migrations written on parallel branches land out of order: a schema migrated to a later
    version before this one shipped still gets it (here 0003, the timers, missing under a 99)."""
    shipped = pg_schema.migrations()
    monkeypatch.setattr(pg_schema, "migrations", lambda: [*shipped, (99, "SELECT 1;")])
    monkeypatch.setattr(pg_schema, "LATEST", 99)
    assert PgStore(pg_url).init() == (0, 99)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE ratchet_timers")
        conn.execute("DELETE FROM ratchet_schema_version WHERE version = 3")  # as if 0003 came after 99
    assert PgStore(pg_url).init() == (2, 99)  # `ratchet db init` says "migrated from version 2"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('ratchet_timers') IS NOT NULL").fetchone() == (True,)
        versions = {row[0] for row in conn.execute("SELECT version FROM ratchet_schema_version")}
    assert versions == {v for v, _ in shipped} | {99}
