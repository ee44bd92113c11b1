"""Where one process's time goes on the PostgreSQL store: the client's profile, the server's statements.

On a private server (tests/pg_cluster.py, fsync on) restarted with `pg_stat_statements`
loaded, it runs bench/pg_bench.py's one-process measure (N runs x K task steps) once to
warm up, then again under cProfile, and prints:

1. the client's functions by own time (psycopg's `wait` is the time spent waiting for the
   server: round trips and commits), and the measure's own figures;
2. the server's statements by total execution time, with calls and mean time per call
   (execution only: a commit's WAL flush is not in it);
3. `EXPLAIN ANALYZE` of one append (journal.pg_group.BATCH, a batch of one), rolled back.

    python bench/pg_profile.py [--runs 300] [--steps 5] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from pg_bench import in_process  # noqa: E402

from journal.pg_group import BATCH  # noqa: E402

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
        print("warm-up:", in_process(url, folder, args.runs, args.steps, "-warm"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
        profile = cProfile.Profile()
        profile.enable()
        measured = in_process(url, folder, args.runs, args.steps, "-profiled")
        profile.disable()
        print("profiled (slower: cProfile's own cost):", measured)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
        print("server: calls, total ms, mean µs, statement")
        with psycopg.connect(url, autocommit=True) as conn:
            for row in conn.execute(STATEMENTS, [args.top]):
                print(*row, sep="  ")
        with psycopg.connect(f"{url}&options=-csearch_path%3Dbench_runner") as conn:
            run, last, head = conn.execute("SELECT run_id, last_seq, head FROM ratchet_runs LIMIT 1").fetchone()  # type: ignore[misc]
            conn.execute("UPDATE ratchet_runs SET owner = 'profile' WHERE run_id = %s", [run])
            line = b'{"type":"transition"}'
            print("\nEXPLAIN ANALYZE of one append of two lines (rolled back):")
            params = {"lease": 30.0, "runs": [run], "owners": ["profile"], "seqs": [last], "heads": [head],
                      "new_seqs": [last + 2], "new_heads": ["0" * 64], "kind": "seals", "seal_runs": [],
                      "seal_names": [], "seals": [], "line_runs": [run, run], "line_seqs": [last + 1, last + 2],
                      "lines": [line, line]}
            for (text,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + BATCH, params):
                print(text)
            conn.rollback()


if __name__ == "__main__":
    main()
