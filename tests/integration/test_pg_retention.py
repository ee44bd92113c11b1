"""Settled message rows expire on PostgreSQL, queued ones never do, and no deletion lets a
message apply twice; queued rows (and this host's unposted files) show in `ratchet status`.

A real server (tests/pg_cluster.py), a fresh schema per test, the real console script; time is
the file clock, set from the server's own `now()` at the start of each test (a row's
`settled_at` is the server's time; the retention counts on the engine's clock), then moved on
by the test — never a sleep. Hostile rows are written by SQL, as a forger with access to the
database would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from engine.run.clock import FileClock
from engine.supervise import retention
from engine.supervise.retention import Retention
from journal.pg_store import PgStore

from pg_cluster import share_home_key
from waiting import wait_for

RATCHET = str(Path(sys.executable).parent / "ratchet")
REVIEW = """
name: review
version: 1
initial: review
states:
  review: {approvers: [alice, bob], timeout: 30d}
  done: {final: true}
  rejected: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
  - {trigger: reject, source: review, dest: rejected}
"""


def server_now(url: str) -> datetime:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        return row[0]


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    (tmp_path / "review.yaml").write_text(REVIEW)
    FileClock(tmp_path / "clock").set(server_now(pg_url))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return clean | {"RATCHET_HOME": str(tmp_path / "home"), "RATCHET_CLOCK_FILE": str(tmp_path / "clock"),
                    "RATCHET_STORE": pg_url}


def ratchet(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RATCHET, *args], env=env | extra, cwd=Path(env["RATCHET_HOME"]).parent,
                          capture_output=True, text=True, timeout=120)


def ok(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    out = ratchet(env, *args, **extra)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def later(env: dict[str, str], **delta: float) -> None:
    clock = FileClock(Path(env["RATCHET_CLOCK_FILE"]))
    clock.set(clock.now() + timedelta(**delta))


def rows(url: str) -> dict[str, dict]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute("SELECT key, run_id, state, reason, posted_at, settled_at FROM ratchet_messages ORDER BY id")
        names = [c.name for c in cur.description or ()]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def sql(url: str, query: str, params: list[object] | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query.encode(), params)


def insert_row(url: str, key: str, run_id: str, body: dict, **columns: object) -> None:
    """A row as a forger with SQL access writes it (no NOTIFY: the next look finds it)."""
    fields = {"key": key, "run_id": run_id, "body": json.dumps(body).encode(), "format": "json",
              "posted_by": "psql"} | columns
    sql(url, f"INSERT INTO ratchet_messages ({', '.join(fields)}) VALUES ({', '.join(['%s'] * len(fields))})",
        list(fields.values()))


def decisions(env: dict[str, str], run_id: str) -> list[tuple[str, str]]:
    lines = ok(env, "tail", run_id, "--json").stdout.splitlines()
    return [(r["type"], r["source_file"]) for r in map(json.loads, lines)
            if r["type"] in ("trigger_received", "trigger_refused")]


def inbox(env: dict[str, str], folder: str = "") -> list[str]:
    where = Path(env["RATCHET_HOME"]) / "inbox" / folder
    return sorted(p.name for p in where.iterdir() if p.is_file()) if where.exists() else []


def claimed(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["RATCHET_HOME"]) / "inbox" / ".claimed").rglob("*.json"))


def waiting_runs(env: dict[str, str], *run_ids: str) -> None:
    for run_id in run_ids:
        ok(env, "start", "review.yaml", "--id", run_id)
    ok(env, "supervise", "--once")


# --- the store's expiring, on the real server ------------------------------------------------------


@pytest.fixture
def store(pg_url: str):
    found = PgStore(pg_url)
    found.pool()  # migrated
    yield found
    found.close()


def settled_rows(url: str, count: int, at: datetime, run_id: str = "r1", prefix: str = "s") -> None:
    sql(url, "INSERT INTO ratchet_messages (key, run_id, body, format, posted_by, state, reason, settled_at)"
             " SELECT %s || n, %s, '{}', 'json', 'psql', CASE WHEN n %% 2 = 0 THEN 'delivered' ELSE 'refused' END,"
             " CASE WHEN n %% 2 = 0 THEN NULL ELSE 'stale' END, %s::timestamptz + n * interval '1 second'"
             " FROM generate_series(1, %s) AS n", [prefix, run_id, at, count])


def test_expire_deletes_the_oldest_settled_rows_before_the_cutoff_and_never_a_queued_one(store, pg_url):
    """Queued rows survive any cutoff — also one forged with a settling time long past; settled
    rows go oldest first, at most `limit` per call, only those settled before the cutoff."""
    t0 = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    settled_rows(pg_url, 6, t0)  # s1..s6 settled at t0+1s..t0+6s
    insert_row(pg_url, "queued-old", "r1", {"run": "r1", "trigger": "approve", "by": "bob"})
    insert_row(pg_url, "queued-forged-time", "r1", {"run": "r1", "trigger": "approve", "by": "bob"},
               settled_at=t0 - timedelta(days=400))
    sql(pg_url, "UPDATE ratchet_messages SET posted_at = %s WHERE state = 'queued'", [t0 - timedelta(days=400)])
    assert store.expire_messages(t0 + timedelta(seconds=5), 2) == 2
    assert sorted(rows(pg_url)) == ["queued-forged-time", "queued-old", "s3", "s4", "s5", "s6"]
    assert store.expire_messages(t0 + timedelta(seconds=5), 100) == 2  # s3, s4: s5 settled at the cutoff
    assert store.expire_messages(datetime.fromisoformat("2999-01-01T00:00:00+00:00"), 100) == 2
    assert sorted(rows(pg_url)) == ["queued-forged-time", "queued-old"]


def test_the_queued_keys_are_the_queued_rows_only(store, pg_url):
    """What the dashboard polls each second: the keys of the queued rows, none of the settled."""
    settled_rows(pg_url, 3, datetime.fromisoformat("2026-01-01T00:00:00+00:00"))
    insert_row(pg_url, "q1", "r1", {"run": "r1", "trigger": "approve", "by": "bob"})
    insert_row(pg_url, "q2", "r2", {"run": "r2", "trigger": "reject", "by": "alice"})
    assert sorted(store.queued_message_keys()) == ["q1", "q2"]
    assert sorted(store.queued_message_keys()) == sorted(p.posting.key for p in store.queued_messages())


def test_a_settled_row_must_have_its_time(store, pg_url):
    """A settled row with no settling time could never expire: the schema refuses it."""
    with pytest.raises(psycopg.errors.CheckViolation):
        insert_row(pg_url, "no-time", "r1", {"run": "r1"}, state="delivered")


def test_two_expiring_at_once_take_different_rows_and_never_wait(store, pg_url):
    """Rows another transaction holds (another supervisor's batch) are skipped, not waited for
    (FOR UPDATE SKIP LOCKED): the call returns with the others deleted; the held ones go later."""
    t0 = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    settled_rows(pg_url, 10, t0)
    cutoff = t0 + timedelta(days=1)
    with psycopg.connect(pg_url) as holder:  # a transaction, open until rolled back
        holder.execute("SELECT 1 FROM ratchet_messages WHERE key IN ('s1', 's2', 's3') FOR UPDATE")
        done: list[int] = []
        expiring = threading.Thread(target=lambda: done.append(store.expire_messages(cutoff, 100)), daemon=True)
        expiring.start()
        try:
            wait_for(lambda: done, timeout=15, what="the expiring call to return while 3 rows are held")
        finally:
            holder.rollback()
            expiring.join(timeout=30)
    assert done == [7] and sorted(rows(pg_url)) == ["s1", "s2", "s3"]
    assert store.expire_messages(cutoff, 100) == 3 and rows(pg_url) == {}


def test_the_supervisors_expiring_is_bounded_per_look(store, pg_url, monkeypatch):
    t0 = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    settled_rows(pg_url, 1200, t0)
    monkeypatch.setattr(retention, "BATCH", 100)
    monkeypatch.setattr(retention, "BATCHES", 3)
    expiring = Retention(store, keep=7 * 86400)
    now = t0 + timedelta(days=8)
    assert expiring.expire(now) == 300 and len(rows(pg_url)) == 900  # three statements of 100, then the next look
    monkeypatch.setattr(retention, "BATCHES", 20)
    assert expiring.expire(now) == 900 and expiring.expire(now) == 0 and expiring.expired == 1200


def test_the_expiring_query_walks_the_settled_index(store, pg_url):
    """The plan of the retention's statement reads the partial index on settled_at, not the table."""
    t0 = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    settled_rows(pg_url, 20000, t0)
    for n in range(200):
        insert_row(pg_url, f"q{n}", "r1", {"run": "r1"})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE ratchet_messages")
        plan = json.dumps(conn.execute(
            "EXPLAIN (FORMAT JSON) DELETE FROM ratchet_messages WHERE id IN (SELECT id FROM ratchet_messages"
            " WHERE state <> 'queued' AND settled_at < %s ORDER BY settled_at LIMIT 500 FOR UPDATE SKIP LOCKED)",
            [t0 + timedelta(days=1)]).fetchone())
    assert '"Index Name": "ratchet_messages_settled"' in plan, plan


# --- supervisors, commands, crashes ----------------------------------------------------------------


@pytest.mark.slow  # a few supervisor runs
def test_a_delivered_row_is_kept_for_the_retention_then_deleted_by_a_supervisor(env):
    url = env["RATCHET_STORE"]
    waiting_runs(env, "r1", "r2")
    ok(env, "approve", "r1", "--by", "alice")
    ok(env, "supervise", "--once")
    [key] = rows(url)
    assert rows(url)[key]["state"] == "delivered"
    later(env, days=6)
    ok(env, "supervise", "--once")
    assert list(rows(url)) == [key]  # kept: 7 days by default
    later(env, days=1, minutes=1)
    out = ok(env, "supervise", "--once")
    assert rows(url) == {} and "deleted 1 settled messages" in out.stderr
    assert decisions(env, "r1") == [("trigger_received", key)]

    ok(env, "approve", "r2", "--by", "bob")
    ok(env, "supervise", "--once")
    [settled] = [row["settled_at"] for row in rows(url).values()]
    FileClock(Path(env["RATCHET_CLOCK_FILE"])).set(settled + timedelta(hours=2))
    ok(env, "supervise", "--once", RATCHET_MESSAGE_RETENTION="3h")
    assert len(rows(url)) == 1  # the environment's 3 h: kept
    ok(env, "supervise", "--once", "--message-retention", "1h", RATCHET_MESSAGE_RETENTION="3h")
    assert rows(url) == {}  # the option wins
    bad = ratchet(env, "supervise", "--once", "--message-retention", "a week")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad
    assert "--message-retention='a week': bad duration" in bad.stderr and "hint: e.g. 7d" in bad.stderr
    bad = ratchet(env, "supervise", "--once", RATCHET_MESSAGE_RETENTION="-1d")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "RATCHET_MESSAGE_RETENTION='-1d'" in bad.stderr, bad


@pytest.mark.slow  # three supervisor runs
def test_killed_between_journaling_and_settling_the_row_is_never_expired_and_never_applied_twice(env):
    """kill -9 after the delivery is journaled and before its row is marked: the row is still
    queued (the retention never takes it); the next start settles it from the journal, and only
    then may it expire, even with a retention of 0s. Journaled once."""
    url = env["RATCHET_STORE"]
    waiting_runs(env, "r1")
    ok(env, "approve", "r1", "--by", "alice")
    killed = ratchet(env, "supervise", "--once", "--message-retention", "0s", RATCHET_CRASH_AT="lane_delivered:1")
    assert killed.returncode == -signal.SIGKILL, killed
    [key] = rows(url)
    assert rows(url)[key]["state"] == "queued" and decisions(env, "r1") == [("trigger_received", key)]
    ok(env, "supervise", "--once", "--message-retention", "0s")
    assert rows(url)[key]["state"] == "delivered"  # settled from the journal (after the clock's now: kept)
    later(env, minutes=1)
    ok(env, "supervise", "--once", "--message-retention", "0s")
    assert rows(url) == {} and decisions(env, "r1") == [("trigger_received", key)]


@pytest.mark.slow  # a handful of supervisor runs on two homes
def test_a_file_whose_row_expired_while_its_host_was_down_is_filed_once_and_its_key_posted_again_is_a_no_op(
        env, tmp_path):
    """Host A claims and posts an inbox file, then is killed before filing it; host B delivers
    the row; it settles and expires. A comes back: its claimed file is answered by the run's
    journal and filed in done/, nothing applied again. The same key posted again (A's file
    re-posted under its claimed name, as after a crash) only settles: the journal knows it."""
    url, a = env["RATCHET_STORE"], Path(env["RATCHET_HOME"])
    b = tmp_path / "hostB"
    waiting_runs(env, "r1")
    share_home_key(a, b)
    host_b = env | {"RATCHET_HOME": str(b)}
    body = {"run": "r1", "trigger": "approve", "by": "alice"}
    (a / "inbox" / "by-hand.json").write_text(json.dumps(body))
    killed = ratchet(env, "supervise", "--once", RATCHET_CRASH_AT="message_posted:1")
    assert killed.returncode == -signal.SIGKILL, killed
    [key] = rows(url)
    assert [p.name for p in claimed(env)] == [key]
    ok(host_b, "supervise", "--once")
    assert rows(url)[key]["state"] == "delivered" and decisions(env, "r1") == [("trigger_received", key)]
    later(env, days=8)
    ok(host_b, "supervise", "--once")
    assert rows(url) == {}
    ok(env, "supervise", "--once")  # A again: adopts its claimed file
    assert inbox(env, "done") == ["by-hand.json"] and claimed(env) == [] and rows(url) == {}
    insert_row(url, key, "r1", body, answers=0, posted_by="inbox file by-hand.json on A")
    ok(host_b, "supervise", "--once", "--message-retention", "30d")  # kept, to be looked at
    assert rows(url)[key]["state"] == "delivered"
    assert decisions(env, "r1") == [("trigger_received", key)]  # once, whatever happened to its row


@pytest.mark.slow  # a few commands
def test_a_running_host_whose_posted_rows_are_gone_files_or_posts_again_by_the_journal(env, tmp_path, monkeypatch):
    """A supervisor's mailroom (in this process, on the real store) has posted two inbox files
    and waits for their rows to settle. One row is delivered by another host, then deleted (as
    the retention does) before this host looked: the run's journal answers it, and the file goes
    to done/. The other row is deleted while still queued (by hand): nothing journaled it, so
    the file is checked again and posted again, and then delivered once."""
    from engine.home import Home
    from engine.supervise.mailroom import Mailroom
    from engine.supervise.runs import RunTable

    url, a = env["RATCHET_STORE"], Path(env["RATCHET_HOME"])
    b = tmp_path / "hostB"
    waiting_runs(env, "r1", "r2")
    share_home_key(a, b)
    for run_id in ("r1", "r2"):
        (a / "inbox" / f"{run_id}.json").write_text(json.dumps({"run": run_id, "trigger": "approve", "by": "bob"}))
    monkeypatch.setenv("RATCHET_CLOCK_FILE", env["RATCHET_CLOCK_FILE"])
    home = Home(a, store=url)
    runs = RunTable(home)
    runs.scan()
    mailroom = Mailroom(home, runs)
    mailroom.open(settle=0.0)
    try:
        mailroom.scan()  # claims both, posts both, keeps both claimed
        keys = {row["run_id"]: key for key, row in rows(url).items()}
        assert mailroom.postbox is not None and sorted(mailroom.postbox.posted) == sorted(keys.values())
        sql(url, "DELETE FROM ratchet_messages WHERE key = %s", [keys["r2"]])  # queued, deleted by hand
        ok(env | {"RATCHET_HOME": str(b)}, "supervise", "--once")  # host B delivers r1's row
        assert decisions(env, "r1") == [("trigger_received", keys["r1"])]
        sql(url, "DELETE FROM ratchet_messages WHERE key = %s", [keys["r1"]])  # settled, expired
        mailroom.take_posted()
        assert inbox(env, "done") == ["r1.json"]  # answered by r1's journal
        assert list(rows(url)) == [keys["r2"]] and rows(url)[keys["r2"]]["state"] == "queued"  # posted again
    finally:
        mailroom.close()
        home.store.close()
    ok(env | {"RATCHET_HOME": str(b)}, "supervise", "--once")
    ok(env, "supervise", "--once")  # host A files r2's file once its row settled
    assert decisions(env, "r2") == [("trigger_received", keys["r2"])]
    assert inbox(env, "done") == ["r1.json", "r2.json"] and claimed(env) == []


@pytest.mark.slow  # two supervisors for a few seconds
def test_two_supervisors_expiring_at_once_deliver_every_message_once(env, tmp_path):
    """Two hosts running with a retention of 0s (rows deleted as soon as settled, by either):
    a host often finds the row of its own file gone before it saw it settle. Every approval,
    row or file, from either host, is journaled once; every file is filed in done/ on its own
    host; every row ends deleted."""
    url, a = env["RATCHET_STORE"], Path(env["RATCHET_HOME"])
    b = tmp_path / "hostB"
    ids = [f"r{n}" for n in range(8)]
    waiting_runs(env, *ids)
    share_home_key(a, b)
    later(env, hours=1)  # the clock ahead of the server's: every settled row is past a retention of 0s
    supervisors = []
    for home in (a, b):
        log = tmp_path / f"{home.name}.log"
        with open(log, "w") as err:
            supervisors.append(subprocess.Popen(
                [RATCHET, "supervise", "--rescan", "0.3", "--message-retention", "0s"], cwd=tmp_path, stderr=err,
                env=env | {"RATCHET_HOME": str(home)}, text=True))
        wait_for(lambda log=log: "supervising 8 runs" in log.read_text(), what=f"{home.name}'s supervisor up")
    try:
        for n, run_id in enumerate(ids):
            host = (a, b)[n % 2]
            if n < len(ids) // 2:
                ok(env | {"RATCHET_HOME": str(host)}, "approve", run_id, "--by", "alice")
            else:
                (host / "inbox" / f"{run_id}.json").write_text(json.dumps({"run": run_id, "trigger": "approve",
                                                                          "by": "alice"}))
        for run_id in ids:
            wait_for(lambda run_id=run_id: len(decisions(env, run_id)) == 1, timeout=60, what=f"{run_id} approved")
        for n, run_id in enumerate(ids[len(ids) // 2:], len(ids) // 2):
            done = (a, b)[n % 2] / "inbox" / "done" / f"{run_id}.json"
            wait_for(done.exists, timeout=30, what=f"{done} filed by its own host")
        wait_for(lambda: rows(url) == {}, timeout=30, what="every settled row deleted")
    finally:
        for supervisor in supervisors:
            supervisor.send_signal(signal.SIGTERM)
        for supervisor in supervisors:
            supervisor.wait(timeout=60)
    for run_id in ids:
        assert [kind for kind, _ in decisions(env, run_id)] == ["trigger_received"]
    for home in (a, b):
        assert not list((home / "inbox" / "rejected").glob("*.json")), home
        assert not list((home / "inbox" / ".claimed").rglob("*.json")), home
    logs = (tmp_path / "home.log").read_text() + (tmp_path / "hostB.log").read_text()
    assert "deleted" in logs and "Traceback" not in logs
    print(f"files whose row was gone before their host saw it settle: {logs.count('its row is gone (expired)')}")


@pytest.mark.slow  # a few supervisor runs
def test_hostile_rows_a_forged_delivered_row_loses_no_queued_message(env):
    """A forged settled row (inserted, or a host's posted row marked delivered by SQL) is
    deleted by the retention like any settled row, but never takes a real message with it:
    a queued approval beside it is applied once; a host's file whose row was marked delivered
    without its run journaling it is not filed as applied but rejected, saying so; a row for an
    unknown run is refused, then expires."""
    url, home = env["RATCHET_STORE"], Path(env["RATCHET_HOME"])
    waiting_runs(env, "r1", "r2")
    approve = {"run": "r1", "trigger": "approve", "by": "alice"}
    insert_row(url, "forged", "r1", approve, state="delivered", settled_at=server_now(url) - timedelta(days=300))
    insert_row(url, "nobody", "ghost", {"run": "ghost", "trigger": "approve", "by": "alice"})
    ok(env, "approve", "r1", "--by", "bob")
    ok(env, "supervise", "--once")
    real = [key for key, row in rows(url).items() if key not in ("forged", "nobody")]
    assert "forged" not in rows(url)  # past any retention: deleted at once
    assert rows(url)["nobody"]["state"] == "refused" and rows(url)["nobody"]["reason"].startswith("unknown run")
    assert decisions(env, "r1") == [("trigger_received", real[0])]

    (home / "inbox" / "for-r2.json").write_text(json.dumps({"run": "r2", "trigger": "approve", "by": "alice"}))
    killed = ratchet(env, "supervise", "--once", RATCHET_CRASH_AT="message_posted:1")
    assert killed.returncode == -signal.SIGKILL, killed
    [posted] = [key for key, row in rows(url).items() if row["run_id"] == "r2"]
    sql(url, "UPDATE ratchet_messages SET state = 'delivered', settled_at = now() WHERE key = %s", [posted])
    ok(env, "supervise", "--once")
    assert inbox(env, "done") == [] and "for-r2.json" in inbox(env, "rejected")
    why = (home / "inbox" / "rejected" / "for-r2.json.error.txt").read_text()
    assert "says delivered, but run 'r2' never journaled it" in why, why
    assert decisions(env, "r2") == [] and json.loads(ok(env, "status", "r2", "--json").stdout)[0]["state"] == "review"
    later(env, days=8)
    ok(env, "supervise", "--once")
    assert rows(url) == {}


@pytest.mark.slow  # a few commands
def test_archive_deletes_the_archived_runs_settled_rows_only(env):
    url = env["RATCHET_STORE"]
    waiting_runs(env, "r1", "r2")
    ok(env, "approve", "r1", "--by", "alice")
    ok(env, "reject", "r2", "--by", "carol")  # not an approver: refused, r2 goes on waiting
    ok(env, "supervise", "--once")  # r1 finished
    insert_row(url, "late", "r1", {"run": "r1", "trigger": "reject", "by": "bob"})  # queued after r1 ended
    ok(env, "supervise", "--once")
    assert rows(url)["late"]["state"] == "refused"
    later(env, days=2)
    insert_row(url, "after", "r1", {"run": "r1", "trigger": "reject", "by": "bob"})
    before = rows(url)
    out = ok(env, "archive", "--finished-before", "1d")
    assert "archived 1 runs" in out.stderr and "r1: archived" in out.stdout, out
    kept = rows(url)
    assert len(before) == 4 and {(row["run_id"], row["state"]) for row in kept.values()} == {
        ("r1", "queued"), ("r2", "refused")}  # r1's settled rows gone; its queued one and r2's kept
    ok(env, "supervise", "--once")
    assert rows(url)["after"]["state"] == "refused" and rows(url)["after"]["reason"].startswith("archived run")


@pytest.mark.slow  # a few commands
def test_status_shows_queued_rows_and_this_hosts_unposted_files_once_each(env):
    url, home = env["RATCHET_STORE"], Path(env["RATCHET_HOME"])
    waiting_runs(env, "r1", "r2")
    ok(env, "approve", "r1", "--by", "alice")
    (home / "inbox" / "for-r2.json").write_text(json.dumps({"run": "r2", "trigger": "reject", "by": "bob"}))
    queued = {row["run_id"]: row["queued"] for row in json.loads(ok(env, "status", "--json").stdout)}
    assert [(q["asks"], q["by"], q["where"]) for q in queued["r1"]] == [("approve", "alice", "row")]
    assert [(q["asks"], q["by"], q["where"]) for q in queued["r2"]] == [("reject", "bob", "inbox")]
    killed = ratchet(env, "supervise", "--once", RATCHET_CRASH_AT="message_posted:1")  # r2's file: claimed, a row
    assert killed.returncode == -signal.SIGKILL, killed
    queued = {row["run_id"]: row["queued"] for row in json.loads(ok(env, "status", "--json").stdout)}
    assert [(q["asks"], q["where"]) for q in queued["r2"]] == [("reject", "row")]  # one entry: its row
    FileClock(Path(env["RATCHET_CLOCK_FILE"])).set(rows(url)[queued["r2"][0]["key"]]["posted_at"]
                                                   + timedelta(seconds=7))
    table = ok(env, "status").stdout
    assert "queued 7 s: reject by bob" in next(line for line in table.splitlines() if line.startswith("r2 "))
    ok(env, "supervise", "--once")
    assert all(not row["queued"] for row in json.loads(ok(env, "status", "--json").stdout))
    assert {row["state"] for row in rows(url).values()} == {"delivered"}
