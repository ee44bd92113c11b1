"""Approval latency on PostgreSQL: a message posted as a row, or dropped as an inbox file, to a
running supervisor; the file store's inbox beside them as the baseline.

Three homes, each with its own `ratchet supervise` (2 workers, `--rescan 5`, so only the
wake-ups count: inotify for files, LISTEN/NOTIFY for rows), and runs waiting for `approve`:

- `pg-row`: `engine.supervise.sending.send` in this process on the PostgreSQL store, in an
  open home: it inserts the row (and its NOTIFY); the supervisor delivers it;
- `pg-file`: an inbox file written as `ratchet send` writes one (a home with a people file
  and no key does this) on the PostgreSQL store: the supervisor claims it, proves and posts
  it as a row, delivers the row, then files the file;
- `file`: the same inbox file on the file store (no rows).

The latency of one approval is its `trigger_received` record's timestamp minus the moment
just before the send (one machine, one wall clock). One approval at a time; the modes
are interleaved within each round. Prints one JSON document; the summary on stderr,
with the machine's load (`os.getloadavg`) at the start and the end.

    python bench/pg_messages_bench.py [--approvals 20] [--rounds 3] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine.home import Home  # noqa: E402
from engine.supervise.message import write_message  # noqa: E402
from engine.supervise.sending import compose, send  # noqa: E402
from journal import TriggerReceived  # noqa: E402

from pg_cluster import running_cluster  # noqa: E402

MACHINE = "name: wait\nversion: 1\ninitial: review\nstates:\n  review: {timeout: 1d}\n  done: {final: true}\n" \
          "transitions:\n  - {trigger: approve, source: review, dest: done}\n"
RATCHET = str(Path(sys.executable).parent / "ratchet")


def fresh_schema(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"


class Lane:
    """One home, its store, its runs and its supervisor."""

    def __init__(self, name: str, folder: Path, store: str, runs: int) -> None:
        self.name, self.store = name, store
        self.root = folder / name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")} | {
            "RATCHET_HOME": str(self.root), "RATCHET_STORE": store}
        self.ids = [f"{name}-{n:04d}" for n in range(runs)]
        for run_id in self.ids:
            subprocess.run([RATCHET, "start", str(folder / "wait.yaml"), "--id", run_id], env=self.env,
                           check=True, capture_output=True, cwd=folder)
        self.home = Home(self.root, store=store)
        self.log = open(folder / f"{name}.log", "w")  # noqa: SIM115 (kept open for the supervisor's life)
        self.supervisor = subprocess.Popen([RATCHET, "supervise", "--rescan", "5"], env=self.env, cwd=folder,
                                           stderr=self.log)
        self.next = 0

    def ready(self) -> bool:
        return f"supervising {len(self.ids)} runs" in Path(self.log.name).read_text()

    def approve(self) -> float:
        """Send one approval, wait until it is journaled; its latency in ms."""
        run_id = self.ids[self.next]
        self.next += 1
        message = compose(run=run_id, trigger="approve", by="alice")
        began = time.time()
        if self.name == "pg-row":
            sent = send(self.home, message)
            assert sent.posted is not None, sent
        else:
            write_message(self.home, message)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for record in self.home.store.read(run_id).records:
                if isinstance(record, TriggerReceived):
                    at = datetime.fromisoformat(record.ts.replace("Z", "+00:00")).timestamp()
                    return (at - began) * 1000
            time.sleep(0.002)
        raise RuntimeError(f"{self.name}: {run_id} not journaled in 30 s; see {self.log.name}")

    def stop(self) -> None:
        self.supervisor.send_signal(signal.SIGTERM)
        self.supervisor.wait(timeout=60)
        self.log.close()


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(values), "p50_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2), "max_ms": round(ordered[-1], 2)}


def measure(url: str, folder: Path, args: argparse.Namespace) -> dict:
    (folder / "wait.yaml").write_text(MACHINE)
    runs = args.approvals * args.rounds
    lanes = [Lane("pg-row", folder, fresh_schema(url, "bench_rows"), runs),
             Lane("pg-file", folder, fresh_schema(url, "bench_files"), runs),
             Lane("file", folder, "file:", runs)]
    try:
        deadline = time.monotonic() + 60
        while not all(lane.ready() for lane in lanes):
            if time.monotonic() > deadline:
                raise RuntimeError("the supervisors did not start in 60 s")
            time.sleep(0.05)
        time.sleep(2.5)  # past the supervisors' warm-up (the inbox's models imported in a thread)
        rounds: list[dict[str, list[float]]] = []
        for _ in range(args.rounds):
            got: dict[str, list[float]] = {lane.name: [] for lane in lanes}
            for _ in range(args.approvals):  # interleaved: a slow moment hits every mode
                for lane in lanes:
                    got[lane.name].append(lane.approve())
            rounds.append(got)
    finally:
        for lane in lanes:
            lane.stop()
    result = {}
    for lane in lanes:
        every = [v for got in rounds for v in got[lane.name]]
        result[lane.name] = summary(every) | {"p50_by_round_ms": [round(statistics.median(g[lane.name]), 2)
                                                                  for g in rounds]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=20, help="approvals per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", help="a PostgreSQL server (default: a private one, as the tests start)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ratchet-msg-bench-") as tmp:
        if args.url:
            result = measure(args.url, Path(tmp), args)
        else:
            with running_cluster() as cluster:
                result = measure(cluster.url(), Path(tmp), args)
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps({"approval_latency": result, "loadavg": load}, indent=2))
    for name, figures in result.items():
        print(f"{name:8s} approval latency p50 {figures['p50_ms']} ms (rounds {figures['p50_by_round_ms']}), "
              f"p90 {figures['p90_ms']} ms, max {figures['max_ms']} ms, n={figures['n']}", file=sys.stderr)
    print(f"load average {load['before']} -> {load['after']}", file=sys.stderr)


if __name__ == "__main__":
    main()
