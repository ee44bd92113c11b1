"""Where one process's time goes on the PostgreSQL store: the client's profile, the server's statements.

On a private server (tests/pg_cluster.py, fsync on) restarted with `pg_stat_statements`
loaded, it runs bench/pg_bench.py's one-process measure (N runs x K task steps) once to
warm up, then again under cProfile, and prints:

1. the client's functions by own time (psycopg's `wait` is the time spent waiting for the
   server: round trips and commits), and the measure's own figures;
2. the server's statements by total execution time, with calls and mean time per call
   (execution only: a commit's WAL flush is not in it);
3. `EXPLAIN ANALYZE` of a batch of four appends (journal.pg_group.BATCH), rolled back.

With `--lanes T` the measure is bench/pg_bench.py's T lanes instead (one process, T threads,
appends grouped across runs: journal/pg_group.py), every lane thread profiled (its times
include waiting: for the batch in flight, for the server, for the GIL).

    python bench/pg_profile.py [--runs 300] [--steps 5] [--top 25] [--lanes T]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import threading
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from pg_bench import in_lanes, in_process  # noqa: E402

from journal.pg_group import BATCH, GroupCommit, Pending  # noqa: E402

from pg_cluster import running_cluster  # noqa: E402

STATEMENTS = """
SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric * 1000, 1) AS mean_us,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--lanes", type=int, default=1, help="profile T lanes (threads) instead of one run at a time")
    args = parser.parse_args()
    with running_cluster() as cluster, tempfile.TemporaryDirectory(prefix="ratchet-pg-profile-") as tmp:
        url = cluster.url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        cluster.stop()
        cluster.run()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        folder = Path(tmp)

        def measure(tag: str) -> dict:
            if args.lanes > 1:
                return in_lanes(url, folder, args.runs, args.steps, args.lanes, tag)
            return in_process(url, folder, args.runs, args.steps, tag)

        print("warm-up:", measure("-warm"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
        profiles = [cProfile.Profile()]

        def profile_thread(*_: object) -> None:  # a lane's first event: profile that thread from now on
            profiles.append(cProfile.Profile())
            profiles[-1].enable()

        threading.setprofile(profile_thread)
        profiles[0].enable()
        measured = measure("-profiled")
        profiles[0].disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        print("profiled (slower: cProfile's own cost):", measured)
        out = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=out)
        for profile in profiles[1:]:
            profile.disable()
            stats.add(profile)
        stats.sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
        print("server: calls, total ms, mean µs, statement")
        with psycopg.connect(url, autocommit=True) as conn:
            for row in conn.execute(STATEMENTS, [args.top]):
                print(*row, sep="  ")
        schema = "bench_lanes" if args.lanes > 1 else "bench_runner"
        with psycopg.connect(f"{url}&options=-csearch_path%3D{schema}") as conn:
            rows = conn.execute("SELECT run_id, last_seq, head FROM ratchet_runs ORDER BY run_id LIMIT 4").fetchall()
            conn.execute("UPDATE ratchet_runs SET owner = 'profile' WHERE run_id = ANY(%s)", [[r[0] for r in rows]])
            line = b'{"type":"transition"}'
            group = GroupCommit(channel="profile", lease=30.0, seal_kind="seals")
            appends = [Pending(conn=conn, run_id=run, owner="profile", last_seq=last, head=head, seq=last + 2,
                               prev="0" * 64, lines=[line, line], seal=None) for run, last, head in rows]
            print(f"\nEXPLAIN ANALYZE of a batch of {len(appends)} appends of two lines each (rolled back):")
            for (text,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + BATCH, group._params(appends)):
                print(text)
            conn.rollback()


if __name__ == "__main__":
    main()
