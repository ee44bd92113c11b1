"""Deadlines on the PostgreSQL store: N waits expiring at once under 1 and 2 supervisors.

What it measures, per round (rounds interleave every variant, so a slow moment of the
machine hits them all; each figure is the median of the rounds with its min and max):

1. N runs wait in a state with a one-hour timeout (created beforehand, in a fresh schema);
   S `ratchet supervise` processes (each its own home, `--workers W`: S "hosts") start and
   fold them; then the shared FileClock jumps two hours. Timed: from the jump to the N-th
   `timeout_fired` row (polled every 20 ms), so start-up is not counted. Counted: the jobs
   that found their run locked by another supervisor (each supervisor says so at stop),
   the timeouts each supervisor fired (claims), the server's write transactions per timeout
   (transaction ids handed out, from the jump to the supervisors' exit: a job that found
   nothing to do still claims and releases its run), and that each timeout fired once.
2. The claim alone: with T timers in the table (spread over a month, 2 due per call), one
   claim of 2 timers and the writer's `set` that ends it, repeated; and the claim's plan.

Variants: this tree (timers claimed with FOR UPDATE SKIP LOCKED) and, with --baseline PATH,
another checkout of Ratchet (e.g. the commit before: each supervisor fires from its own
agenda), each run with PYTHONPATH set to its tree in a schema of its own.

    python bench/deadline_bench.py [--runs 400] [--rounds 3] [--workers 2] [--baseline /path/to/old/ratchet]

Without --url it starts a private server like the tests do (tests/pg_cluster.py, fsync
on). Prints one JSON document; a summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pg_cluster import running_cluster, share_home_key  # noqa: E402

WAITS = """
name: waits
version: 1
initial: review
states:
  review: {timeout: 1h}
  expired: {final: true, outcome: expired}
transitions:
  - {trigger: timeout, source: review, dest: expired}
"""

CREATE = """
import sys
from engine.home import Home
from engine.run.runner import Runner
runner = Runner(Home(sys.argv[1]).ensure())
for i in range(int(sys.argv[2])):
    runner.launch("waits", run_id=f"w{i:05d}")
"""

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
FIRED = ("SELECT count(*) FROM ratchet_records"
         " WHERE position('\"type\":\"timeout_fired\"' IN convert_from(line, 'UTF8')) > 0")


def schema_url(base: str, schema: str) -> str:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def count(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def next_xid(url: str) -> int:
    """The server's next transaction id: one is handed out to each transaction that writes."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ratchet-deadline-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def expire(tree: Path, url: str, runs: int, supervisors: int, workers: int) -> dict[str, object]:
    """Measure 1: the time for `runs` timeouts under `supervisors` supervisors of tree `tree`."""
    with folder() as tmp:
        (tmp / "machines").mkdir()
        (tmp / "machines" / "waits.yaml").write_text(WAITS)
        clock = tmp / "clock"
        clock.write_text(T0.isoformat().replace("+00:00", "Z"))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
        env = clean | {"PYTHONPATH": str(tree), "RATCHET_STORE": url, "RATCHET_CLOCK_FILE": str(clock)}
        homes = [tmp / f"host-{i}" for i in range(supervisors)]
        subprocess.run([sys.executable, "-c", CREATE, str(homes[0]), str(runs)],
                       env=env | {"RATCHET_HOME": str(homes[0])}, cwd=tmp, check=True)
        for home in homes[1:]:
            share_home_key(homes[0], home)
        procs, logs = [], []
        for home in homes:
            log = tmp / f"{home.name}.log"
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", "from engine.cli import main; main()", "supervise",
                     "--workers", str(workers)],
                    env=env | {"RATCHET_HOME": str(home)}, cwd=tmp, stderr=out, start_new_session=True))
            logs.append(log)
        try:
            deadline = time.monotonic() + 120
            while not all(f"supervising {runs} runs" in log.read_text() for log in logs):
                if time.monotonic() > deadline:
                    tails = " | ".join(log.read_text()[-500:] for log in logs)
                    raise RuntimeError(f"supervisors did not start: {tails}")
                time.sleep(0.05)
            xid_before = next_xid(url)
            started = time.monotonic()
            clock.write_text((T0 + timedelta(hours=2)).isoformat().replace("+00:00", "Z"))
            while count(url, FIRED) < runs:
                if time.monotonic() - started > 600:
                    raise RuntimeError("timeouts did not all fire")
                time.sleep(0.02)
            seconds = time.monotonic() - started
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(60)
            texts = [log.read_text() for log in logs]
            writes = next_xid(url) - xid_before
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        locked = sum(int(n) for t in texts for n in re.findall(r"(\d+) jobs found their run locked", t))
        fired_here = [int(m.group(1)) if (m := re.search(r"(\d+) due deadlines claimed", t)) else None for t in texts]
        return {"seconds": seconds, "per_second": runs / seconds, "locked_jobs": locked, "fired_here": fired_here,
                "write_transactions_per_timeout": round(writes / runs, 2), "timeouts_journaled": count(url, FIRED)}


def claim_alone(url: str, timers: int, repeat: int) -> dict[str, object]:
    """Measure 2: one claim of 2 due timers and the `set` that ends it, with `timers` in the table."""
    from journal.pg_store import PgStore
    from journal.pg_timers import CLAIM

    store = PgStore(url)
    try:
        store.timers.set("warm-up", T0 + timedelta(days=60), 1)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO ratchet_timers (run_id, due_at, seq) SELECT 'r' || i,"
                         " %s::timestamptz + (i || ' seconds')::interval, 3 FROM generate_series(1, %s) AS i",
                         [T0, timers])
            conn.execute("ANALYZE ratchet_timers")
            plan = [row[0] for row in conn.execute("EXPLAIN " + CLAIM, {"now": T0 + timedelta(days=1), "limit": 2,
                                                                       "owner": "x", "lease": 30.0}).fetchall()]
        now = T0 + timedelta(seconds=timers // 2)  # half of them are due: the claim must still not scan them
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            claimed = store.timers.claim(now, "bench", 2)
            times.append(time.perf_counter() - began)
            for due in claimed:
                store.timers.set(due.run_id, due.due, due.seq + 1)  # what the Runner does after firing
        times.sort()
        scan = next((line.strip() for line in plan if "Scan" in line and "ratchet_timers " in line + " "), "")
        return {"timers": timers, "claim_p50_ms": times[len(times) // 2] * 1000,
                "claim_p95_ms": times[int(len(times) * 0.95)] * 1000, "plan": scan}
    finally:
        store.close()


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--baseline", type=Path, help="another Ratchet checkout to measure beside this one")
    parser.add_argument("--url", help="a PostgreSQL server to use (default: a private one)")
    args = parser.parse_args()
    variants = {"claims (this tree)": ROOT}
    if args.baseline:
        variants[f"baseline ({args.baseline})"] = args.baseline.resolve()

    def measure(base: str) -> dict[str, object]:
        results: dict[str, list[dict[str, object]]] = {}
        for round_ in range(args.rounds):
            for name, tree in variants.items():
                for supervisors in (1, 2):
                    url = schema_url(base, f"bench_{uuid.uuid4().hex[:12]}")  # each measure its own tables
                    key = f"{name}, {supervisors} supervisor{'s' if supervisors > 1 else ''}"
                    results.setdefault(key, []).append(expire(tree, url, args.runs, supervisors, args.workers))
                    print(f"round {round_ + 1}: {key}: {results[key][-1]}", file=sys.stderr)
        claim = claim_alone(schema_url(base, f"bench_{uuid.uuid4().hex[:12]}"), args.timers, 500)
        return {"runs": args.runs, "workers": args.workers, "rounds": args.rounds, "expire": results, "claim": claim,
                "load": os.getloadavg()}

    if args.url:
        report = measure(args.url)
    else:
        with running_cluster() as cluster:
            report = measure(cluster.url())
    print(json.dumps(report, indent=1, default=str))
    print(f"\n{args.runs} waits expiring at once, supervisors of {args.workers} workers each "
          f"(load average {report['load'][0]:.1f}):", file=sys.stderr)
    for key, rows in report["expire"].items():
        print(f"  {key}: {summary([r['per_second'] for r in rows])} timeouts/s; "
              f"{summary([r['seconds'] for r in rows])} s; "
              f"{summary([r['write_transactions_per_timeout'] for r in rows])} write transactions per timeout; "
              f"locked jobs "
              f"{[r['locked_jobs'] for r in rows]}; fired per supervisor {[r['fired_here'] for r in rows]}",
              file=sys.stderr)
    claim = report["claim"]
    print(f"  one claim of 2 among {claim['timers']:,} timers: p50 {claim['claim_p50_ms']:.2f} ms, "
          f"p95 {claim['claim_p95_ms']:.2f} ms; plan: {claim['plan']}", file=sys.stderr)


if __name__ == "__main__":
    main()
