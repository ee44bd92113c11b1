"""Deadlines shared by supervisors on one PostgreSQL store: each fires once, by whoever claims it.

Real `ratchet supervise` processes (each with its own home, as on two hosts) on the session's
private server, a FileClock that jumps past the deadlines, and the journals as the proof:

- 200 waits that expire at once under two supervisors: every timeout is journaled exactly
  once, no job of either supervisor found its run locked (each dispatched only what it
  claimed), and both fired some of them;
- a supervisor that dies (kill -9) right after claiming: nobody fires what it claimed until
  its claims run out (the lease), then the other supervisor does;
- crashes between an append and the timer's update (kill -9 at the crash point): a stale
  timer of a run that moved on fires nothing, a timer behind the journal is moved to the
  journal's deadline (not fired early), and a run whose timer was never written still
  expires, once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from test_metrics import scrape, value

from engine.home import Home
from engine.run.clock import FileClock
from engine.run.runner import Runner
from journal import RunFinished, TimeoutFired
from journal.pg_store import PgStore

from pg_cluster import share_home_key
from waiting import wait_for

pytestmark = pytest.mark.slow

WAITS = """
name: waits
version: 1
initial: review
states:
  review: {approvers: [alice], timeout: 1h}
  second: {approvers: [alice], timeout: 1d}
  done: {final: true}
  expired: {final: true, outcome: expired}
transitions:
  - {trigger: approve, source: review, dest: second}
  - {trigger: approve, source: second, dest: done}
  - {trigger: timeout, source: [review, second], dest: expired}
"""

# A wait whose timeout escalates (no `timeout` transition: the shipped renewal review's way).
ALARMS = """
name: alarms
version: 1
initial: review
states:
  review: {approvers: [alice], timeout: 1h}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""

DELIVER = """
import sys
from engine.home import Home
from engine.run.runner import Runner
from engine.supervise.message import Message
run_id = sys.argv[2]
Runner(Home(sys.argv[1]), machines_dir=sys.argv[3]).deliver(run_id, Message(run=run_id, trigger="approve", by="alice"))
"""

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Hosts:
    """Supervisors with homes of their own on one store, a shared FileClock, and their logs."""

    def __init__(self, tmp_path: Path, pg_url: str, **env: str) -> None:
        self.dir = tmp_path
        self.machines = tmp_path / "machines"
        self.machines.mkdir()
        (self.machines / "waits.yaml").write_text(WAITS)
        (self.machines / "alarms.yaml").write_text(ALARMS)
        self.clock = FileClock(tmp_path / "clock")
        self.clock.set(T0)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
        self.env = clean | {"RATCHET_STORE": pg_url, "RATCHET_CLOCK_FILE": str(self.clock.path)} | env
        self.url = pg_url
        self.first = Home(tmp_path / "host-0", store=pg_url).ensure()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def home(self, name: str) -> Path:
        home = self.dir / name
        if home != self.first.root and not (home / "keys" / "home.key").exists():
            share_home_key(self.first.root, home)  # one sealing key for every host of a store
        return home

    def start_runs(self, count: int, prefix: str = "w", machine: str = "waits") -> list[str]:
        runner = Runner(self.first, clock=self.clock, machines_dir=self.machines)
        ids = [f"{prefix}{i:03d}" for i in range(count)]
        for run_id in ids:
            assert runner.launch(machine, run_id=run_id).status == "waiting"
        return ids

    def supervise(self, name: str, *args: str, workers: int = 2, debug: bool = False,
                  **env: str) -> subprocess.Popen[bytes]:
        home = self.home(name)
        with open(self.dir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from engine.cli import main; main()", *(["--debug"] if debug else []),
                 "supervise", "--rescan", "0.5",
                 "--workers", str(workers), *args],
                env=self.env | {"RATCHET_HOME": str(home)} | env, cwd=self.dir, stderr=log, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def wait_up(self, name: str, runs: int) -> None:
        wait_for(lambda: f"supervising {runs} runs" in self.log(name), timeout=60, what=f"{name} up")

    def stop(self, name: str) -> str:
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, self.log(name)
        return self.log(name)

    def cleanup(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the supervisor, its forkserver and its workers
            proc.wait(10)

    def sql(self, query: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def fired(self) -> int:
        """How many `timeout_fired` records the store holds (all runs)."""
        rows = self.sql("SELECT count(*) FROM ratchet_records WHERE position('\"type\":\"timeout_fired\"'"
                        " IN convert_from(line, 'UTF8')) > 0")
        return int(rows[0][0])  # type: ignore[call-overload]


@pytest.fixture
def hosts(tmp_path: Path, pg_url: str):
    h = Hosts(tmp_path, pg_url)
    yield h
    h.cleanup()


def timeouts(store: PgStore, run_id: str) -> int:
    return sum(isinstance(r, TimeoutFired) for r in store.read(run_id).records)


def fired_here(log: str) -> int:
    found = re.findall(r"(\d+) due deadlines claimed from the store and fired here", log)
    assert len(found) == 1, log[-3000:]
    return int(found[0])


def test_200_deadlines_passing_at_once_under_two_supervisors_each_fire_once_and_are_split(hosts: Hosts,
                                                                                         pg_url: str) -> None:
    expiring = hosts.start_runs(100)
    escalating = hosts.start_runs(100, prefix="a", machine="alarms")  # their ticket is written after `escalated`
    ids = expiring + escalating
    names = ("host-a", "host-b")
    for name in names:
        hosts.supervise(name, "--metrics-port", "0")
    for name in names:
        hosts.wait_up(name, 200)
    ports = {name: int(wait_for(lambda name=name: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                                                            hosts.log(name)), what="metrics port").group(1))
             for name in names}
    assert hosts.fired() == 0
    hosts.clock.advance(2 * 3600)  # every wait's hour is over
    wait_for(lambda: hosts.fired() >= 200, timeout=120, what="200 timeouts")
    wait_for(lambda: not hosts.sql("SELECT 1 FROM ratchet_timers"), timeout=30, what="every timer cleared")
    scraped = {name: scrape(port) for name, port in ports.items()}
    logs = {name: hosts.stop(name) for name in names}

    store = PgStore(pg_url)
    try:
        for run_id in ids:
            assert timeouts(store, run_id) == 1, run_id  # fired exactly once
            assert store.verify(run_id).ok
        reader = Runner(hosts.first, clock=hosts.clock)
        assert all(reader.read(run_id).outcome == "expired" for run_id in expiring)
        assert all(reader.read(run_id).status == "escalated" for run_id in escalating)
        assert all(store.fetch("escalations", f"{run_id}.json") for run_id in escalating)  # each with its ticket
    finally:
        store.close()
    assert hosts.fired() == 200
    for name, log in logs.items():
        assert "found their run locked" not in log, (name, log[-3000:])  # no job of either was wasted
    for name, samples in scraped.items():  # the same counts, as an operator's Prometheus sees them
        assert value(samples, "ratchet_jobs_locked_out_total") == 0, name
        assert value(samples, "ratchet_deadlines_claimed_total") == fired_here(logs[name]), name
    counts = {name: fired_here(log) for name, log in logs.items()}
    assert sum(counts.values()) == 200, counts  # each supervisor advanced only what it claimed...
    assert all(n > 0 for n in counts.values()), counts  # ...and both claimed some
    print(f"fired per supervisor: {counts}")


def test_a_supervisor_killed_holding_claims_loses_them_after_the_lease_and_the_other_fires_them(
        tmp_path: Path, pg_url: str) -> None:
    lease = 3.0
    hosts = Hosts(tmp_path, pg_url, RATCHET_PG_LEASE=str(lease))
    try:
        ids = hosts.start_runs(12)
        a = hosts.supervise("host-a", RATCHET_CRASH_AT="after_claim:1")  # dies by kill -9 right after its first claim
        hosts.wait_up("host-a", 12)
        hosts.clock.advance(2 * 3600)
        assert a.wait(60) == -signal.SIGKILL, hosts.log("host-a")
        held = hosts.sql("SELECT run_id, claimed_until > now() FROM ratchet_timers WHERE claimed_by IS NOT NULL")
        assert held and all(running for _, running in held), held  # it died holding claims that still run
        claimed = sorted(str(run_id) for run_id, _ in held)
        assert len(claimed) == 6  # its 2 free workers' worth, and twice its pool queued
        assert hosts.fired() == 0  # it fired nothing

        hosts.supervise("host-b")
        hosts.wait_up("host-b", 12)
        store = PgStore(pg_url)
        try:
            others = [r for r in ids if r not in claimed]
            wait_for(lambda: all(timeouts(store, r) for r in others), timeout=60, what="B to fire the unclaimed")
            # Until A's claims run out (the server's clock), nobody fires what A claimed.
            while hosts.sql("SELECT 1 FROM ratchet_timers WHERE claimed_by IS NOT NULL AND claimed_until > now()"
                            " AND run_id = ANY(%s)", [claimed]):
                assert not any(timeouts(store, r) for r in claimed)
            wait_for(lambda: all(timeouts(store, r) for r in claimed), timeout=30, what="B to fire A's claims")
            log = hosts.stop("host-b")
            assert fired_here(log) == 12
            assert all(timeouts(store, r) == 1 for r in ids)
        finally:
            store.close()
    finally:
        hosts.cleanup()


def test_timers_a_crash_left_stale_behind_or_missing_are_repaired_from_the_journal(hosts: Hosts,
                                                                                   pg_url: str) -> None:
    moved, behind, plain = hosts.start_runs(3)
    crash = hosts.env | {"RATCHET_HOME": str(hosts.first.root), "RATCHET_CRASH_AT": "after_append:1"}

    def deliver_and_die(run_id: str) -> None:
        done = subprocess.run([sys.executable, "-c", DELIVER, str(hosts.first.root), run_id, str(hosts.machines)],
                              env=crash, cwd=hosts.dir, capture_output=True)
        assert done.returncode == -signal.SIGKILL, done.stderr

    def run_and_die(run_id: str) -> None:  # `ratchet run` journals the run at rest, and dies before its timer
        run = subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", "run", "waits", "--id",
                              run_id], env=crash, cwd=hosts.dir, capture_output=True)
        assert run.returncode == -signal.SIGKILL, run.stderr

    # Each process dies (kill -9) right after its first durable append, before the timer's update:
    deliver_and_die(moved)  # `moved` waits in 'second' (a day)...
    deliver_and_die(moved)  # ...then finishes: its timer is still review's hour (a stale row)
    deliver_and_die(behind)  # `behind` waits in 'second': its timer is still review's hour (behind the journal)
    run_and_die("lost-before")  # rests with no timer while no supervisor runs
    timers = {str(r[0]): (r[1], r[2]) for r in hosts.sql("SELECT run_id, due_at, seq FROM ratchet_timers")}
    hour = T0 + timedelta(hours=1)
    assert timers[moved][0] == hour and timers[behind][0] == hour and "lost-before" not in timers  # as left

    store = PgStore(pg_url)
    try:
        before = {r: store.read(r).cursor for r in (moved, behind)}
        hosts.supervise("host-a")
        hosts.wait_up("host-a", 4)
        # Its start-up adds the missing timer (and only that: the others stay as they were until claimed).
        assert {str(r[0]): r[1] for r in hosts.sql("SELECT run_id, due_at FROM ratchet_timers")} == {
            moved: hour, behind: hour, plain: hour, "lost-before": hour}
        run_and_die("lost-after")  # rests with no timer while the supervisor runs: repaired once it is due
        assert "lost-after" not in {str(r[0]) for r in hosts.sql("SELECT run_id FROM ratchet_timers")}
        hosts.clock.advance(2 * 3600)
        lost = ("lost-before", "lost-after")
        wait_for(lambda: all(timeouts(store, r) == 1 for r in (plain, *lost)), timeout=60,
                 what="the plain wait and those whose timer was lost to expire")
        wait_for(lambda: {str(r[0]) for r in hosts.sql("SELECT run_id FROM ratchet_timers")} == {behind},
                 timeout=30, what="the stale timer cleared and the one behind moved")
        (due, seq), = hosts.sql("SELECT due_at, seq FROM ratchet_timers WHERE run_id = %s", [behind])
        assert due == T0 + timedelta(days=1) and seq == store.read(behind).cursor.seq  # the journal's
        assert {r: store.read(r).cursor for r in (moved, behind)} == before  # neither fired nor touched
        hosts.clock.advance(24 * 3600)
        wait_for(lambda: timeouts(store, behind) == 1, timeout=60, what="the wait in 'second' to expire")
        log = hosts.stop("host-a")
        assert [timeouts(store, r) for r in (moved, behind, *lost, plain)] == [0, 1, 1, 1, 1]
        assert isinstance(store.read(moved).records[-2], RunFinished)  # it ended before its stale timer came due
        assert "added the missing timers of 1 runs" in log
        assert "restored the timers of 1 runs at rest past their deadline" in log
    finally:
        store.close()


BLOCKING = """
name: blocking
version: 1
initial: review
on_escalate: pg_deadlines_notify:notify
states:
  review: {approvers: [alice], timeout: 1h}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""

# on_escalate: leaves `<run>.<pid>` beside the gate, then waits for the gate to exist.
NOTIFY = '''
import os
import time
from pathlib import Path


def notify(ctx):
    gate = Path(os.environ["NOTIFY_GATE"])
    (gate.parent / f"{ctx.run_id}.{os.getpid()}").write_text("called")
    while not gate.exists():
        time.sleep(0.01)
'''

ADVANCE = """
import sys
from engine.home import Home
from engine.run.runner import Runner
Runner(Home(sys.argv[1])).advance(sys.argv[2])
"""


def test_an_escalation_another_process_is_still_notifying_is_left_to_it_and_repaired_if_it_dies(
        hosts: Hosts, pg_url: str) -> None:
    (hosts.machines / "blocking.yaml").write_text(BLOCKING)
    (hosts.machines / "pg_deadlines_notify.py").write_text(NOTIFY)
    gate = hosts.dir / "notified" / "gate"
    gate.parent.mkdir()
    hosts.env["NOTIFY_GATE"] = str(gate)
    (run_id,) = hosts.start_runs(1, prefix="b", machine="blocking")
    hosts.clock.advance(2 * 3600)
    # Another process fires the timeout, escalates, and is caught in on_escalate, holding the run...
    escalating = subprocess.Popen([sys.executable, "-c", ADVANCE, str(hosts.first.root), run_id],
                                  env=hosts.env | {"RATCHET_HOME": str(hosts.first.root)}, cwd=hosts.dir)
    store = PgStore(pg_url)
    try:
        wait_for(lambda: (gate.parent / f"{run_id}.{escalating.pid}").exists(), timeout=60, what="on_escalate")
        assert store.held(run_id)
        hosts.supervise("host-b", debug=True)  # ...while a supervisor starts and sees it escalated, not notified
        wait_for(lambda: f"run {run_id}: escalated by another process, which holds it" in hosts.log("host-b"),
                 timeout=60, what="the supervisor to leave the ticket to its holder")
        head = store.read(run_id).cursor
        escalating.kill()  # kill -9 in on_escalate: the ticket says it was never notified
        escalating.wait(10)
        gate.touch()
        wait_for(lambda: (tickets := store.fetch("escalations", f"{run_id}.json")) and b'"notified": true' in tickets,
                 timeout=60, what="the supervisor to call on_escalate again")
        callers = {int(p.name.rsplit(".", 1)[1]) for p in gate.parent.glob(f"{run_id}.*")}
        assert len(callers) == 2 and escalating.pid in callers  # once by each: the supervisor's worker repaired it
        assert store.read(run_id).cursor.seq >= head.seq and timeouts(store, run_id) == 1
        log = hosts.stop("host-b")
        assert "found their run locked" not in log, log[-3000:]  # it waited for the holder, it did not collide
    finally:
        if escalating.poll() is None:
            escalating.kill()
            escalating.wait(10)
        store.close()
