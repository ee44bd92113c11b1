"""The retention of settled message rows on PostgreSQL: what a supervisor's expiring costs.

A private PostgreSQL server (tests/pg_cluster.py, fsync on) unless --url is given. Each round
fills a fresh schema with `--rows` settled rows (delivered or refused, settled evenly over the
last 14 days) and 1,000 queued ones, ANALYZEs it, then measures, as a supervisor does it
(engine.supervise.retention.Retention, batches of 500, at most 20 per look):

- `idle look`: a look when nothing is due (the common case, at every rescan): its statement,
  the median of 21;
- `expire`: every look until the rows settled more than 7 days ago are gone (about half), each
  statement timed: the total, rows/s, and each batch's p50 / p95;

with the migration's partial index on `settled_at` (`index`), and interleaved in the same
round, the same on a schema where that index was dropped (`no index`): what a scan per look
would cost. The plan of one batch is printed (`EXPLAIN (ANALYZE, BUFFERS)`, rolled back), to
show the index is what the statement reads. Medians of the rounds with min–max; the load
average (`os.getloadavg`) at the start and the end. Prints one JSON document.

    python bench/pg_retention_bench.py [--rows 100000] [--rounds 3] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402

from engine.supervise import retention  # noqa: E402
from journal.pg_store import PgStore  # noqa: E402

from pg_cluster import running_cluster  # noqa: E402

BATCH_SQL = ("DELETE FROM ratchet_messages WHERE id IN (SELECT id FROM ratchet_messages WHERE state <> 'queued'"
             " AND settled_at < %s ORDER BY settled_at LIMIT %s FOR UPDATE SKIP LOCKED)")


def fresh_store(url: str, name: str, rows: int, now: datetime, *, index: bool) -> PgStore:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    store = PgStore(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}")
    store.pool()  # migrated
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ratchet_messages (key, run_id, body, format, posted_by, state, reason, posted_at, settled_at)"
            " SELECT 'k' || n, 'run-' || (n %% 5000), '{\"run\": \"x\", \"trigger\": \"approve\", \"by\": \"bob\"}',"
            " 'json', 'bench', CASE WHEN n %% 10 = 0 THEN 'refused' ELSE 'delivered' END,"
            " CASE WHEN n %% 10 = 0 THEN 'stale' END, %s - (n * %s) * interval '1 second',"
            " %s - (n * %s) * interval '1 second' FROM generate_series(1, %s) AS n",
            [now, 14 * 86400 / rows, now, 14 * 86400 / rows, rows])
        conn.execute("INSERT INTO ratchet_messages (key, run_id, body, format, posted_by)"
                     " SELECT 'q' || n, 'run-' || n, '{}', 'json', 'bench' FROM generate_series(1, 1000) AS n")
        if not index:
            conn.execute("DROP INDEX ratchet_messages_settled")
        conn.execute("ANALYZE ratchet_messages")
    return store


def timed_batches(store: PgStore, before: datetime) -> tuple[list[float], int]:
    """Every look of a supervisor until nothing is due: each statement's seconds, and the rows deleted."""
    times, deleted = [], 0
    while True:
        for _ in range(retention.BATCHES):
            began = time.perf_counter()
            done = store.expire_messages(before, retention.BATCH)
            times.append(time.perf_counter() - began)
            deleted += done
            if done < retention.BATCH:
                return times, deleted


def plan(store: PgStore, before: datetime) -> list[str]:
    with psycopg.connect(store.url) as conn:
        lines = [row[0] for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + BATCH_SQL, [before, retention.BATCH])]
        conn.rollback()
    return lines


def one_round(url: str, rows: int, index: bool) -> dict[str, Any]:
    now = datetime.now().astimezone()
    store = fresh_store(url, "bench_retention", rows, now, index=index)
    try:
        cutoff = now - timedelta(days=7)
        looks = []
        for _ in range(21):  # nothing that old: idle looks (the first one plans the statement)
            began = time.perf_counter()
            store.expire_messages(now - timedelta(days=30), retention.BATCH)
            looks.append(time.perf_counter() - began)
        idle = statistics.median(looks)
        shown = plan(store, cutoff)
        times, deleted = timed_batches(store, cutoff)
        with psycopg.connect(store.url, autocommit=True) as conn:
            left = conn.execute("SELECT state = 'queued', count(*) FROM ratchet_messages GROUP BY 1").fetchall()
    finally:
        store.close()
    ordered = sorted(times)
    return {"idle_look_ms": idle * 1000, "deleted": deleted, "total_s": sum(times), "rows_per_s": deleted / sum(times),
            "batch_p50_ms": statistics.median(times) * 1000,
            "batch_p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000, "statements": len(times),
            "left": {("queued" if queued else "settled"): n for queued, n in left}, "plan": shown}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", help="an existing server (default: a private one, started here)")
    args = parser.parse_args()
    load = os.getloadavg()

    def run(url: str) -> dict[str, list[dict[str, Any]]]:
        results: dict[str, list[dict[str, Any]]] = {"index": [], "no index": []}
        for n in range(args.rounds):
            for mode in (("index", "no index") if n % 2 == 0 else ("no index", "index")):  # interleaved
                results[mode].append(one_round(url, args.rows, mode == "index"))
        return results

    if args.url:
        results = run(args.url)
    else:
        with running_cluster() as cluster:
            results = run(cluster.url())
    out = {"rows": args.rows, "rounds": args.rounds, "load_start": load, "load_end": os.getloadavg(),
           "results": results}
    print(json.dumps(out, indent=2))
    for mode, rounds in results.items():
        print(f"{mode}: idle look {spread([r['idle_look_ms'] for r in rounds])} ms; expired "
              f"{rounds[0]['deleted']} of {args.rows} settled rows in {spread([r['total_s'] for r in rounds])} s "
              f"({spread([r['rows_per_s'] for r in rounds])} rows/s, {rounds[0]['statements']} statements, "
              f"each p50 {spread([r['batch_p50_ms'] for r in rounds])} ms, p95 "
              f"{spread([r['batch_p95_ms'] for r in rounds])} ms); left {rounds[0]['left']}", file=sys.stderr)
    print("plan of one batch, with the index:\n  " + "\n  ".join(results["index"][0]["plan"]), file=sys.stderr)
    print(f"load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end", file=sys.stderr)


if __name__ == "__main__":
    main()
