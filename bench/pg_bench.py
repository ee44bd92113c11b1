"""PostgreSQL store benchmark: durable steps/s against the server's own commit bound.

1. The server's bound: one client, `INSERT` of one ~300-byte row per transaction in
   autocommit, for `--seconds` (what one commit costs this server: fsync on,
   synchronous_commit on).
2. Ratchet in one process: N runs x K task steps, one after another (the runner bench's
   workload, bench/runner_bench.py), on the PostgreSQL store. Reported with the store's
   commits per step: appends (each one transaction: one statement that checks the
   owner and the chain, inserts the lines and notifies) and every other transaction the
   database counted (reads, taking and releasing runs), from pg_stat_database.
3. `ratchet supervise` processes (1, then 2, each with `--workers` workers, each its
   own home: two "hosts") draining N runs of K steps created beforehand; the time is
   from the first step's `step_started` to the last `run_finished` (journal timestamps),
   so start-up is not counted.

    python bench/pg_bench.py [--runs 500] [--steps 5] [--workers 2] [--url postgresql://...]

Without --url it starts a private server like the tests do (tests/pg_cluster.py: initdb
in a temporary folder, fsync on). Prints one JSON document. Not compared with DBOS on
PostgreSQL yet (bench/peers.py runs DBOS on SQLite).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from runner_bench import write_machine  # noqa: E402

from engine.home import Home  # noqa: E402
from engine.run.clock import FakeClock  # noqa: E402
from engine.run.runner import Runner  # noqa: E402

from pg_cluster import running_cluster  # noqa: E402


def fresh_schema(url: str, name: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{name}"


def counters(url: str) -> tuple[int, int]:
    """(transactions committed in this database, appends so far: the change sequence)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
        seq = conn.execute("SELECT last_value FROM ratchet_change").fetchone()
    return int(row[0]) if row else 0, int(seq[0]) if seq else 0


def server_bound(url: str, seconds: float) -> dict:
    """One client, one INSERT per autocommit transaction."""
    table = fresh_schema(url, "bench_bound")
    payload = b"x" * 300
    with psycopg.connect(table, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, line bytea NOT NULL)")
        n = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            conn.execute("INSERT INTO t (line) VALUES (%s)", [payload])
            n += 1
        elapsed = time.perf_counter() - began
    return {"commits": n, "seconds": round(elapsed, 3), "commits_per_s": round(n / elapsed, 1),
            "ms_per_commit": round(elapsed * 1000 / n, 3)}


def in_process(url: str, folder: Path, runs: int, steps: int) -> dict:
    store_url = fresh_schema(url, "bench_runner")
    machine = write_machine(folder, steps)
    runner = Runner(Home(folder / "runner", store=store_url).ensure(), clock=FakeClock())
    runner.launch(machine, {"i": -1}, run_id="warm-up")  # the schema, the pool, the imports
    xacts, appends = counters(store_url)
    began = time.perf_counter()
    for i in range(runs):
        if runner.launch(machine, {"i": i}, run_id=f"run{i:06d}").status != "finished":
            raise RuntimeError(f"run{i:06d} did not finish")
    elapsed = time.perf_counter() - began
    xacts2, appends2 = counters(store_url)
    total = runs * steps
    return {"runs": runs, "steps_per_run": steps, "seconds": round(elapsed, 3),
            "durable_steps_per_s": round(total / elapsed, 1), "ms_per_step": round(elapsed * 1000 / total, 3),
            "appends_per_step": round((appends2 - appends) / total, 3),
            "transactions_per_step": round((xacts2 - xacts - 1) / total, 3)}


def _ts(line: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(line)["ts"])


def supervised(url: str, folder: Path, runs: int, steps: int, supervisors: int, workers: int) -> dict:
    store_url = fresh_schema(url, f"bench_sup{supervisors}")
    machine = write_machine(folder, steps)
    starter = Runner(Home(folder / f"sup{supervisors}-start", store=store_url).ensure(), clock=FakeClock())
    for i in range(runs):
        starter.start(machine, {"i": i}, run_id=f"run{i:06d}")
    xacts, appends = counters(store_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")} | {"RATCHET_STORE": store_url}
    procs = []
    with contextlib.ExitStack() as stack:
        for s in range(supervisors):
            log = stack.enter_context(open(folder / f"sup{supervisors}-{s}.log", "wb"))
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--workers", str(workers),
                 "--home", str(folder / f"sup{supervisors}-host{s}")], env=env, cwd=folder, stderr=log))
        try:
            _wait_finished(store_url, runs, timeout=600)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
    xacts2, appends2 = counters(store_url)
    with psycopg.connect(store_url, autocommit=True) as conn:
        first = [row[0] for row in conn.execute("SELECT line FROM ratchet_records WHERE seq = 2")]
        last = [row[0] for row in conn.execute(
            "SELECT line FROM ratchet_records r JOIN ratchet_runs USING (run_id) WHERE r.seq = ratchet_runs.last_seq")]
    elapsed = (max(map(_ts, last)) - min(map(_ts, first))).total_seconds()
    total = runs * steps
    return {"supervisors": supervisors, "workers_each": workers, "runs": runs, "steps_per_run": steps,
            "seconds": round(elapsed, 3), "durable_steps_per_s": round(total / elapsed, 1),
            "appends_per_step": round((appends2 - appends) / total, 3),
            "transactions_per_step": round((xacts2 - xacts) / total, 3)}


FINISHED = ("SELECT count(*) FROM ratchet_records r JOIN ratchet_runs USING (run_id)"
            " WHERE r.seq = ratchet_runs.last_seq AND position('\"run_finished\"'::bytea IN r.line) > 0")


def _wait_finished(url: str, runs: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(FINISHED).fetchone()
            if row and row[0] >= runs:
                return
            time.sleep(0.2)
    raise RuntimeError(f"the runs did not all finish within {timeout}s")


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with running_cluster() as cluster:
        yield cluster.url()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the server-bound probe")
    parser.add_argument("--url", help="an existing server (default: a private one, started here)")
    args = parser.parse_args()
    with server(args.url) as url, tempfile.TemporaryDirectory(prefix="ratchet-pg-bench-") as tmp:
        folder = Path(tmp)
        with psycopg.connect(url, autocommit=True) as conn:
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                        for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")}
        result = {"server": settings, "server_bound": server_bound(url, args.seconds),
                  "ratchet_one_process": in_process(url, folder, args.runs, args.steps)}
        for supervisors in (1, 2):
            result[f"ratchet_{supervisors}_supervisor{'s' if supervisors > 1 else ''}"] = supervised(
                url, folder, args.runs, args.steps, supervisors, args.workers)
        bound = result["server_bound"]["commits_per_s"]
        one = result["ratchet_one_process"]
        result["one_process_vs_bound"] = {
            "steps_per_s_if_bound_by_appends": round(bound / one["appends_per_step"], 1),
            "fraction_of_that": round(one["durable_steps_per_s"] * one["appends_per_step"] / bound, 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
