"""Where the PostgreSQL store's parts meet: message rows, claimed timers, seal rows, the fork
server, metrics. Each test is a user's or an attacker's path through two of them, with the
real console script on a fresh schema of the session's private server, time on the file clock.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from waiting import wait_for

RATCHET = str(Path(sys.executable).parent / "ratchet")
REVIEW = """
name: review
version: 1
initial: review
states:
  review: {approvers: [alice, bob], timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    (tmp_path / "clock").write_text("2026-11-27T09:41:00Z")
    (tmp_path / "review.yaml").write_text(REVIEW)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return clean | {"RATCHET_HOME": str(tmp_path / "home"), "RATCHET_CLOCK_FILE": str(tmp_path / "clock"),
                    "RATCHET_STORE": pg_url}


def ok(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([RATCHET, *args], env=env, cwd=Path(env["RATCHET_HOME"]).parent, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def sql(env: dict[str, str], query: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    with psycopg.connect(env["RATCHET_STORE"], autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.slow  # a supervisor with its metrics endpoint
def test_message_rows_settled_by_a_supervisor_are_counted_in_its_metrics(env, tmp_path):
    """On PostgreSQL `ratchet approve` posts a row, not a file: the supervisor that settles the
    row counts it in ratchet_inbox_files_total as it counts a file, accepted or refused by
    reason (a row a forger wrote by SQL for someone who is not an approver included)."""
    ok(env, "start", "review.yaml", "--id", "m1")
    ok(env, "start", "review.yaml", "--id", "m2")
    ok(env, "supervise", "--once")
    ok(env, "approve", "m1", "--by", "alice")
    [[at]] = sql(env, "SELECT answers FROM ratchet_messages")
    sql(env, "INSERT INTO ratchet_messages (key, run_id, body, format, answers, posted_by)"
             " VALUES ('forged', 'm2', %s, 'json', %s, 'psql')",
        [b'{"run": "m2", "trigger": "approve", "by": "mallory"}\n', at])
    log = tmp_path / "supervisor.log"
    with open(log, "w") as err:
        supervisor = subprocess.Popen([RATCHET, "supervise", "--metrics-port", "0"], cwd=tmp_path, stderr=err,
                                      env=env)
    try:
        port = int(wait_for(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text()),
                            what="the metrics address").group(1))
        wait_for(lambda: not sql(env, "SELECT 1 FROM ratchet_messages WHERE state = 'queued'"), what="rows settled")
        samples = scrape(port)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=60)
    assert sorted(sql(env, "SELECT key <> 'forged', state FROM ratchet_messages")) == [(False, "refused"),
                                                                                         (True, "delivered")]
    files = {labels: v for (name, labels), v in samples.items() if name == "ratchet_inbox_files_total"}
    assert files == {(("reason", ""), ("result", "accepted")): 1.0,
                     (("reason", "not an approver"), ("result", "refused")): 1.0}, files
    assert json.loads(ok(env, "status", "m1", "--json"))[0]["state"] == "done"


@pytest.mark.slow  # two supervisors, a kill -9, a lease to run out
def test_a_supervisor_killed_holding_claims_and_message_rows_leaves_every_run_decided_once(tmp_path, pg_url):
    """Two supervisors on one store; 30 waits pass their deadline at the moment cancels and
    approvals for 20 of them are posted as rows; one supervisor is killed (kill -9, its fork
    server and workers too) in the middle of it. The other finishes everything: every row
    settled and journaled at most once, each run decided once (a timeout, a cancel or an
    approval, never two), the journals verify, and a timer is left exactly for the runs
    resting with a deadline."""
    from test_pg_deadlines import Hosts

    from engine.api import Ratchet
    from journal import Cancelled, TimeoutFired, TriggerReceived
    from journal.pg_store import PgStore

    hosts = Hosts(tmp_path, pg_url, RATCHET_PG_LEASE="2")
    try:
        ids = hosts.start_runs(30)
        for name in ("host-a", "host-b"):
            hosts.supervise(name, workers=2)
        for name in ("host-a", "host-b"):
            hosts.wait_up(name, 30)
        api = Ratchet(hosts.home("host-a"), store=pg_url)
        hosts.clock.advance(2 * 3600)  # every wait's hour is over while the messages come
        for n, run_id in enumerate(ids[:20]):
            if n % 2:
                api.cancel(run_id, by="alice", reason="no longer needed")
            else:
                api.approve(run_id, by="alice")
        os.killpg(hosts.procs["host-a"].pid, signal.SIGKILL)  # mid-way: claims and rows in flight
        hosts.procs["host-a"].wait(10)

        def settled() -> bool:
            queued = hosts.sql("SELECT count(*) FROM ratchet_messages WHERE state = 'queued'")[0][0]
            return queued == 0 and hosts.fired() + _count(hosts, "cancelled") >= 20
        wait_for(settled, timeout=90, what="every row settled by the survivor")
        store = PgStore(pg_url)
        try:
            wait_for(lambda: all(_decided(store, run_id) for run_id in ids), timeout=60, what="every run decided")
            rows = {key: (run_id, state) for key, run_id, state in hosts.sql(
                "SELECT key, run_id, state FROM ratchet_messages")}
            assert len(rows) == 20 and all(state in ("delivered", "refused") for _, state in rows.values())
            for run_id in ids:
                records = store.read(run_id).records
                assert store.verify(run_id).ok, run_id
                timeouts = sum(isinstance(r, TimeoutFired) for r in records)
                cancels = sum(isinstance(r, Cancelled) for r in records)
                received = [r for r in records if isinstance(r, TriggerReceived)]
                assert timeouts + cancels + len(received) == 1, (run_id, records)
                keys = [r.source_file for r in records if getattr(r, "source_file", None)]
                assert len(keys) == len(set(keys)), run_id  # no row journaled twice
            resting = {run_id for run_id in ids
                       if any(isinstance(r, TriggerReceived) for r in store.read(run_id).records)}
            timers = {str(row[0]) for row in hosts.sql("SELECT run_id FROM ratchet_timers")}
            assert timers == resting  # approved runs wait in 'second' (1d); nobody else keeps a timer
        finally:
            store.close()
    finally:
        hosts.cleanup()


def _count(hosts, record_type: str) -> int:
    rows = hosts.sql("SELECT count(*) FROM ratchet_records WHERE position(%s IN convert_from(line, 'UTF8')) > 0",
                     [f'"type":"{record_type}"'])
    return int(rows[0][0])


def _decided(store, run_id: str) -> bool:
    from journal import Cancelled, TimeoutFired, TriggerReceived

    return any(isinstance(r, (Cancelled, TimeoutFired, TriggerReceived)) for r in store.read(run_id).records)


def test_a_journal_cut_in_the_database_is_left_alone_not_appended_to_across_the_hole(env, tmp_path):
    """Someone with SQL access deletes a finished run's last records (its run_finished and
    seal), leaving the run's row saying the chain ends further on. The supervisor's fold then
    sees a run owed a move; its worker must not append after the row's end (which would chain
    a record to lines that are gone and leave a hole), but leave the run alone, saying why.
    `verify` names the cut (the seal's side row)."""
    ok(env, "start", "review.yaml", "--id", "c1")
    ok(env, "supervise", "--once")
    ok(env, "approve", "c1", "--by", "alice")
    ok(env, "supervise", "--once")
    [[last]] = sql(env, "SELECT max(seq) FROM ratchet_records WHERE run_id = 'c1'")
    sql(env, "DELETE FROM ratchet_records WHERE run_id = 'c1' AND seq >= %s", [int(last) - 1])  # finished, sealed
    out = subprocess.run([RATCHET, "supervise", "--once"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    seqs = [int(row[0]) for row in sql(env, "SELECT seq FROM ratchet_records WHERE run_id = 'c1' ORDER BY seq")]
    assert seqs == list(range(1, int(last) - 1)), (seqs, out.stderr[-2000:])  # nothing appended across the hole
    assert f"the journal ends at record {int(last) - 2}" in out.stderr, out.stderr[-2000:]
    verify = subprocess.run([RATCHET, "verify", "c1"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert verify.returncode == 1 and "lines were cut off its end" in verify.stdout + verify.stderr


def test_db_init_on_a_database_an_older_main_migrated_around_a_gap_says_it_migrated(env):
    """Versions 1, 2 and 4 applied (migration 0004 landed on main before 0003): `ratchet db init`
    applies 3 and says it migrated, not that the schema was up to date."""
    from journal.pg_schema import LATEST, migrations

    with psycopg.connect(env["RATCHET_STORE"], autocommit=True) as conn:
        conn.execute("CREATE TABLE ratchet_schema_version (version integer PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        for version, script in migrations():
            if version != 3:
                conn.execute(script.encode())
                conn.execute("INSERT INTO ratchet_schema_version (version) VALUES (%s)", [version])
    said = ok(env, "db", "init")
    assert said.endswith(f"schema version {LATEST} (migrated from version 2)\n"), said
    assert sql(env, "SELECT to_regclass('ratchet_timers') IS NOT NULL") == [(True,)]
    assert ok(env, "db", "init").endswith(f"schema version {LATEST} (up to date)\n")


GATED = """
name: gated
version: 1
initial: work
states:
  work: {action: "gated_actions:work", timeout: 1m}
  done: {final: true}
transitions:
  - {trigger: ok, source: work, dest: done}
"""
GATED_ACTIONS = """
import os, time
def work(ctx):
    while not os.path.exists(os.environ["GATE"]):  # the test opens the gate
        time.sleep(0.05)
    return {}
"""


@pytest.mark.slow  # a step held open for a while
def test_a_cancel_row_for_a_run_another_process_holds_is_tried_again_after_a_pause_not_in_a_loop(env, tmp_path):
    """On PostgreSQL every supervisor sees every cancel row, also for runs another process holds
    (a `ratchet run` here; another host's worker running on_cancel): the delivery finds the run
    locked and must wait LOCKED_BACKOFF (0.5 s) like any other job, not be dispatched again at
    once, over and over (it was: thousands of worker round trips per second)."""
    (tmp_path / "gated.yaml").write_text(GATED)
    (tmp_path / "gated_actions.py").write_text(GATED_ACTIONS)
    env = env | {"PYTHONPATH": str(tmp_path), "GATE": str(tmp_path / "gate")}
    ok(env, "start", "gated.yaml", "--id", "g1")
    holder = subprocess.Popen([RATCHET, "run", "gated.yaml", "--id", "g1"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "supervisor.log"
    supervisor = None
    try:
        wait_for(lambda: sql(env, "SELECT 1 FROM ratchet_records WHERE run_id = 'g1' AND seq = 2"),
                 what="the step started in `ratchet run`")
        with open(log, "w") as err:
            supervisor = subprocess.Popen([RATCHET, "supervise"], cwd=tmp_path, stderr=err, env=env)
        wait_for(lambda: "supervising 1 runs" in log.read_text(), what="the supervisor up")
        ok(env, "cancel", "g1", "--by", "alice")
        wait_for(lambda: sql(env, "SELECT 1 FROM ratchet_messages"), what="the cancel posted")
        import time
        time.sleep(2)  # a window in which the held run's cancel is tried: a few times, not thousands
        (tmp_path / "gate").touch()
        assert holder.wait(60) == 0
        wait_for(lambda: not sql(env, "SELECT 1 FROM ratchet_messages WHERE state = 'queued'"), what="row settled")
    finally:
        (tmp_path / "gate").touch()
        if supervisor is not None:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=60)
        holder.wait(60)
    found = re.search(r"(\d+) jobs found their run locked", log.read_text())
    locked = int(found.group(1)) if found else 0
    assert 1 <= locked <= 20, log.read_text()[-2000:]
