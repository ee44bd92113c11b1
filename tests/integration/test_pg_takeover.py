"""Two supervisors ("hosts") on one PostgreSQL store: one dies mid-step, the other takes over.

Each host has its own home (inbox folder) and its own `ratchet supervise` process group;
both share the store and an external ledger (sup_acts: an effect per idempotency key, like
a real API). Host A advances every run into a step (`ship`, idempotent) that blocks after
its effect; B is started meanwhile (it finds every run held, and waits); then A dies:

- `kill -9` of every process of A: PostgreSQL ends A's sessions at once, so B takes the
  runs without waiting for the lease;
- frozen (SIGSTOP of every process of A, a host that hangs or is cut off): A's sessions
  stay open and its leases stop being renewed; once they expire (RATCHET_PG_LEASE=2 s),
  B ends A's sessions and takes the runs. Then A is woken: its workers finish their step
  and try to journal it, and must append nothing.

Proved from the journals and the ledger: every run finishes, each effect happened once,
the journals verify, and nothing was appended by A after B took over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from journal import RunFinished
from journal.pg_store import PgStore

from pg_cluster import share_home_key
from supervisor_harness import machine_folder, pid_alive
from waiting import wait_for

RUNS = 3
LEASE = 2.0

pytestmark = pytest.mark.slow


class Host:
    """One supervisor process group with its own home, on the shared store."""

    def __init__(self, name: str, tmp_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.env = env | {"RATCHET_HOME": str(tmp_path / name)}
        self.log = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cwd = tmp_path

    def ratchet(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", *args],
                              env=self.env, cwd=self.cwd, capture_output=True, timeout=60)

    def share_key(self, other: Host) -> None:
        share_home_key(Path(other.env["RATCHET_HOME"]), Path(self.env["RATCHET_HOME"]))

    def supervise(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--rescan", "0.5",
                 "--workers", str(RUNS)], env=self.env, cwd=self.cwd, stderr=log, start_new_session=True)

    def signal_all(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)  # the supervisor, its forkserver and its workers

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal_all(signal.SIGCONT)
            self.signal_all(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)


@pytest.mark.parametrize("death", ["kill -9", "frozen"])
def test_a_host_dies_mid_step_and_the_other_takes_its_runs_over(tmp_path: Path, tmp_path_factory, pg_url: str,
                                                                death: str) -> None:
    machines = machine_folder(tmp_path_factory)
    ledger = tmp_path / "ledger.jsonl"
    gate = tmp_path / "gate"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env = clean | {"RATCHET_STORE": pg_url, "RATCHET_PG_LEASE": str(LEASE), "RATCHET_LEDGER": str(ledger)}
    a, b = Host("host-a", tmp_path, env), Host("host-b", tmp_path, env)
    store = PgStore(pg_url)
    try:
        ids = [f"s{i}" for i in range(RUNS)]
        for run_id in ids:
            started = a.ratchet("start", str(machines / "shop.yaml"), "--id", run_id,
                                "--input", f"gate={gate}", "--input", "gate_in=ship")
            assert started.returncode == 0, started.stderr
        a.supervise()
        markers = [Path(f"{ledger}.{run_id}.started") for run_id in ids]
        wait_for(lambda: all(m.exists() for m in markers), timeout=60, what="host A mid-step in every run")
        a_workers = {int(m.read_text()) for m in markers}
        assert all(store.held(run_id) for run_id in ids)
        heads = {run_id: store.read(run_id).cursor for run_id in ids}
        b.share_key(a)
        b.supervise()  # B runs meanwhile: every run is A's, so B only looks
        wait_for(lambda: b"supervising 3 runs" in b.log.read_bytes(), timeout=30, what="host B up")
        assert {run_id: store.read(run_id).cursor for run_id in ids} == heads

        a.signal_all(signal.SIGKILL if death == "kill -9" else signal.SIGSTOP)
        died = time.monotonic()
        if death == "kill -9":
            wait_for(lambda: not any(pid_alive(pid) for pid in a_workers), timeout=10, what="host A dead")
        else:  # A renews nothing from now on: the leases it holds end at these times
            with psycopg.connect(pg_url, autocommit=True) as conn:
                leases = dict(conn.execute("SELECT run_id, lease_until FROM ratchet_runs").fetchall())
        for m in markers:
            m.unlink()
        gate.touch()  # B's retry of the step may pass (A's workers are dead or frozen)
        taken = wait_for(lambda: all(len(store.read(r, after=heads[r]).records) > 0 for r in ids) and time.monotonic(),
                         timeout=60, what="host B to journal in every run")
        takeover = taken - died
        for run_id in ids:
            wait_for(lambda run_id=run_id: any(isinstance(r, RunFinished) for r in store.read(run_id).records),
                     timeout=60, what=f"run {run_id} to finish on host B")

        if death == "frozen":
            ends = {run_id: store.read(run_id).cursor for run_id in ids}
            a.signal_all(signal.SIGCONT)  # A wakes up: its workers pass the gate and try to journal the step
            wait_for(lambda: all(f"advance of run {r} failed: JournalWriteError".encode() in a.log.read_bytes()
                                 for r in ids), timeout=30, what="host A's workers to be refused")
            assert {run_id: store.read(run_id).cursor for run_id in ids} == ends  # A appended nothing
            for run_id in ids:  # B could not take a run before A's lease on it ran out
                first = store.read(run_id, after=heads[run_id]).records[0]
                assert datetime.fromisoformat(first.ts) > leases[run_id], (first, leases[run_id])
        for run_id in ids:
            assert store.verify(run_id).ok
            assert any(isinstance(r, RunFinished) for r in store.read(run_id).records)
        entries = [json.loads(line) for line in ledger.read_text().splitlines() if line]
        for key in {e["key"] for e in entries}:
            assert sum(e["effect"] for e in entries if e["key"] == key) == 1, key  # no effect doubled
        ships = [e for e in entries if e["state"] == "ship"]
        assert {e["pid"] for e in ships} - a_workers  # B ran the step again (same key: no second effect)
        assert takeover < LEASE + 20, takeover
        print(f"{death}: takeover in {takeover:.1f}s (lease {LEASE}s)")
    finally:
        a.stop()
        b.stop()
        store.close()
