"""Kill -9 a process of 8 lanes in the middle of a batched commit (journal/pg_group.py), again
and again, then drive its runs to the end, and prove from the database and an outside ledger
that nothing was lost, torn or repeated.

Each child (tests/faults/forked.py: a real process, a real SIGKILL) drives 40 runs of a
4-step machine on the PostgreSQL store with 8 lanes (engine.run.concurrent: threads, each
with its own Runner, sharing one Home and its store), so that their appends meet in batches. It dies at the n-th
batch of two appends or more, inside the batch's pipeline: after the batched statement went
out and before its COMMIT ("before"), or just after the COMMIT went out, before its answer
came back ("after"). Before dying it writes down the batch: each run's chain end before
and after it. Then the test checks:
- the batch committed whole or not at all (every run of it at its old end, or every run
  at its new end), and "before" never committed;
- every run's journal verifies (structure, hash chain, seals);
- after the last kill, one more child drives every run to its end; each step's effect is
  in the ledger exactly once, under one idempotency key per step (a step re-run after a
  kill asks again with the same key: the fake API gives no second effect).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from journal import JournalLockedError, RunStarted, StepSucceeded
from journal.pg_store import PgStore

from forked import run_forked
from waiting import wait_for

ACTIONS = Path(__file__).resolve().parents[1] / "integration" / "sup_acts.py"  # ledger deduplicated by key
LANES, RUNS, STEPS = 8, 40, 4
KILLS = ((2, "before"), (3, "after"), (5, "after"), (4, "before"), (7, "after"))


def advisory_locks(pg_url: str) -> int:
    """Advisory locks held in the database: writers' sessions still open."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
                           " (SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()
    return int(row[0]) if row else -1


def write_machine(folder: Path) -> Path:
    shutil.copy(ACTIONS, folder / "sup_acts.py")
    names = [f"s{i}" for i in range(1, STEPS + 1)]
    states = "".join(f"  {n}: {{action: 'sup_acts:work'}}\n" for n in names)
    moves = "".join(f"  - {{trigger: ok, source: {a}, dest: {b}}}\n"
                    for a, b in zip(names, [*names[1:], "done"], strict=True))
    path = folder / "lanes.yaml"
    path.write_text(f"name: lanes\nversion: 1\ninitial: s1\nstates:\n{states}  done: {{final: true}}\n"
                    f"transitions:\n{moves}")
    return path


def crash_inside_batch(n: int, when: str, record: Path) -> None:
    """In this (child) process: SIGKILL at the n-th batch of two appends or more, at `when`."""
    from journal.pg_group import GroupCommit

    batches = {"count": 0, "armed": False}
    real_send, real_execute = GroupCommit._send, psycopg.Connection.execute

    def send(self: GroupCommit, conn: psycopg.Connection, batch: list) -> None:  # type: ignore[type-arg]
        if len(batch) >= 2:
            batches["count"] += 1
            if batches["count"] == n:
                record.write_text(json.dumps([[p.run_id, p.last_seq, p.seq] for p in batch]))
                batches["armed"] = True
        return real_send(self, conn, batch)

    def execute(conn: psycopg.Connection, query: object, *args: object, **kwargs: object) -> object:  # type: ignore[type-arg]
        if batches["armed"] and query == "COMMIT" and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        cursor = real_execute(conn, query, *args, **kwargs)  # type: ignore[arg-type]
        if batches["armed"] and query == "COMMIT":  # "after": the COMMIT is on its way (a pipeline sends as it goes)
            os.kill(os.getpid(), signal.SIGKILL)
        return cursor

    GroupCommit._send = send  # type: ignore[method-assign]
    psycopg.Connection.execute = execute  # type: ignore[method-assign,assignment]


def drive_all(folder: Path, url: str, machine: Path) -> dict[str, str]:
    """In the child: 8 lanes (engine.run.concurrent) drive every run until it ends; a run still
    locked by the killed process (until the server notices its closed socket) goes again."""
    from engine.home import Home
    from engine.run.concurrent import Driver, Launch

    driver = Driver(Home(folder / "home", store=url).ensure(), threads=LANES)
    todo = [f"run{i:02d}" for i in range(RUNS)]
    ended: dict[str, str] = {}
    while todo:
        outcomes = driver.drive([Launch(machine, run_id=run_id) for run_id in todo])
        for run_id, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, JournalLockedError):
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            ended[run_id] = outcome.status
        todo = [run_id for run_id in todo if run_id not in ended]
    return ended


@pytest.mark.slow  # 2.5-5 s here, more under load
def test_kill_9_inside_a_batched_commit_loses_tears_and_repeats_nothing(tmp_path: Path, pg_url: str) -> None:
    machine = write_machine(tmp_path)
    ledger = tmp_path / "ledger.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")} | {"RATCHET_LEDGER": str(ledger)}
    store = PgStore(pg_url)
    try:
        for n, when in KILLS:
            record = tmp_path / "batch.json"
            record.unlink(missing_ok=True)

            def killed(n: int = n, when: str = when, record: Path = record) -> object:
                crash_inside_batch(n, when, record)
                return drive_all(tmp_path, pg_url, machine)

            code, result = run_forked(killed, env, tmp_path / "result.json", cwd=tmp_path)
            assert code == -signal.SIGKILL, result
            # The server finishes what the dead process sent (a COMMIT may still be on its way to
            # the disk) before it ends that process's sessions: read only once they are gone.
            wait_for(lambda: not advisory_locks(pg_url), timeout=15, what="the killed process's sessions ended")
            batch = json.loads(record.read_text())
            assert len(batch) >= 2
            ends = {run_id: store.read(run_id).cursor.seq for run_id, _, _ in batch}
            landed = {ends[run_id] == new for run_id, _, new in batch}
            assert all(ends[run_id] in (old, new) for run_id, old, new in batch), (when, batch, ends)
            assert len(landed) == 1, f"a batch killed {when} its COMMIT landed in part: {batch} {ends}"
            if when == "before":
                assert landed == {False}
            done = sum(store.read(run_id).cursor.seq for run_id in store.run_ids())
            print(f"killed {when} the COMMIT of a batch of {len(batch)}: landed {landed}; {done} records so far")
            for run_id in store.run_ids():
                assert store.verify(run_id).ok, run_id
        code, ended = run_forked(lambda: drive_all(tmp_path, pg_url, machine), env, tmp_path / "result.json",
                                 cwd=tmp_path)
        assert code == 0, ended
        assert ended == {f"run{i:02d}": "finished" for i in range(RUNS)}
        steps: Counter[tuple[str, str]] = Counter()
        for run_id in store.run_ids():
            assert store.verify(run_id).ok, run_id
            records = store.read(run_id).records
            assert isinstance(records[0], RunStarted)
            steps.update((run_id, r.state) for r in records if isinstance(r, StepSucceeded))
        assert set(steps.values()) == {1} and len(steps) == RUNS * STEPS  # each step succeeded once
        calls = [json.loads(line) for line in ledger.read_text().splitlines()]
        effects = Counter((c["run"], c["state"]) for c in calls if c["effect"])
        assert effects == Counter({step: 1 for step in steps})  # each effect once
        keys = {(c["run"], c["state"]): set() for c in calls}  # type: dict[tuple[str, str], set[str]]
        for c in calls:
            keys[(c["run"], c["state"])].add(c["key"])
        assert all(len(k) == 1 for k in keys.values())  # a re-run asked with the same key
        assert len(calls) > len(effects)  # some steps were re-run after a kill: the check above had work
    finally:
        store.close()
