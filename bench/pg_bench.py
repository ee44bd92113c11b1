"""PostgreSQL store benchmark: durable steps/s against the server's bounds and DBOS on the same server.

Every measure runs on one server (fsync on, synchronous_commit on), in `--rounds` rounds
whose measures are interleaved (a slow moment of the machine hits them all); each figure
is reported as the median of the rounds with its min and max, and each ratio is taken
within a round.

1. The server's bound: one client, `INSERT` of one ~300-byte row per transaction in
   autocommit, for `--seconds` (what one commit costs this server).
2. The bare-journal floor: the same N runs x K steps as rows and nothing else, one client,
   autocommit: one `INSERT` per run and one per step (a journal with no engine, no
   ownership, no chain check: what any durable engine on this server must at least pay).
3. Ratchet in one process: N runs x K task steps, one after another (the runner bench's
   workload, bench/runner_bench.py), on the PostgreSQL store. With its commits per step:
   appends (each one durable transaction: one statement that checks the owner and the
   chain and inserts the lines), write transactions (transaction ids the server handed
   out: every commit that had to reach the disk), and every transaction the database
   counted, reads included (pg_stat_database; its counters may lag a little).
3b. Ratchet in one process with T lanes (`--lanes 2,4,8,16`): engine.run.concurrent's driver,
   T threads, each with its own Runner, sharing one Home and its store, taking the N runs
   in turn. Appends of several
   runs that wait at the same moment are committed together (journal/pg_group.py): its
   durable commits per step (transactions that inserted journal lines, counted from the
   rows' `xmin`) fall below its appends per step.
4. DBOS (bench/peers.py dbos-pg, its own interpreter) on the same server, its system
   database a fresh database there, on the same N x K workload, with its write
   transactions per step counted the same way (`pip install -e '.[bench]'`); also with T
   workflows at once (`peers.py dbos-pg --concurrency T`) where peers.py offers it.
5. `ratchet supervise` processes (1, then 2, each with `--workers` workers, each its
   own home: two "hosts"; then 1 with `--more-workers`) draining N runs of K steps created
   beforehand; the time is from the first step's `step_started` to the last `run_finished`
   (journal timestamps), so start-up is not counted. Several workers append at once, and
   the server flushes their commits together (each append still waits for its own).
6. Ratchet's round trips to the server per step, counted (untimed) on 100 more runs in
   one process, and with the largest T lanes: an `execute` outside a pipeline is one, a
   pipeline block is one.

    python bench/pg_bench.py [--runs 300] [--steps 5] [--rounds 3] [--lanes 2,4,8,16] [--workers 2]
                             [--no-supervisors] [--url postgresql://...]

The ratios are taken within each round: "ratchet /" for one process, "ratchet best /" for
the round's fastest of one process, T lanes and one supervisor (with `--workers` or
`--more-workers` workers), against the round's fastest DBOS (one workflow at a time, or T
at once), named on the summary's last lines. The floor stays one client, one `INSERT` per
run and per step.

Without --url it starts a private server like the tests do (tests/pg_cluster.py: initdb
in a temporary folder, fsync on). Prints one JSON document; the summary and the targets
(>= 5x DBOS on PostgreSQL, >= 0.7 of the bare-journal floor) on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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
from engine.run.concurrent import Driver, Launch  # noqa: E402
from engine.run.runner import Runner  # noqa: E402

from pg_cluster import running_cluster  # noqa: E402


def fresh_schema(url: str, name: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{name}"


def counters(url: str) -> tuple[int, int, int]:
    """(transactions committed in this database, appends so far: the change sequence,
    the next transaction id: write transactions of the whole server so far)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
        seq = conn.execute("SELECT last_value FROM ratchet_change").fetchone()
    return int(row[0]) if row else 0, int(seq[0]) if seq else 0, next_xid(url)


def next_xid(url: str) -> int:
    """The server's next transaction id (one is handed out to each transaction that writes)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
    return int(row[0]) if row else 0


def bare_journal(url: str, runs: int, steps: int) -> dict:
    """The floor: one INSERT per run and one per step, each its own autocommit transaction."""
    schema = fresh_schema(url, "bench_bare")
    line = (b'{"type":"step_succeeded","seq":3,"ts":"2026-11-30T12:00:00.000000Z","prev":"' + b"0" * 64 + b'"}'
            + b"x" * 150)  # about the size of Ratchet's lines
    with psycopg.connect(schema, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (run_id text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("CREATE TABLE records (run_id text NOT NULL, seq bigint NOT NULL, line bytea NOT NULL,"
                     " PRIMARY KEY (run_id, seq))")
        began = time.perf_counter()
        for i in range(runs):
            run_id = f"run{i:06d}"
            conn.execute("INSERT INTO runs (run_id) VALUES (%s)", [run_id])
            for seq in range(1, steps + 1):
                conn.execute("INSERT INTO records (run_id, seq, line) VALUES (%s, %s, %s)", [run_id, seq, line])
        elapsed = time.perf_counter() - began
    return {"runs": runs, "steps_per_run": steps, "seconds": round(elapsed, 3),
            "steps_per_s": round(runs * steps / elapsed, 1), "commits_per_step": round((steps + 1) / steps, 3)}


def dbos_concurrency_supported() -> bool:
    """Whether bench/peers.py can run DBOS with several workflows at once (`--concurrency`)."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--help"], capture_output=True,
                          text=True, timeout=120)
    return "--concurrency" in done.stdout


def dbos_on_pg(url: str, runs: int, steps: int, round_: int, concurrency: int = 1) -> dict:
    """DBOS on the same server, a fresh system database, in its own interpreter; with
    `concurrency` > 1, that many workflows at once (bench/peers.py --concurrency)."""
    name = f"bench_dbos_{round_}_{concurrency}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
    info = psycopg.conninfo.conninfo_to_dict(url)
    dbos_url = f"postgresql://{info['user']}@/{name}?host={info['host']}&port={info['port']}"
    before = next_xid(url)
    more = ["--concurrency", str(concurrency)] if concurrency > 1 else []
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "dbos-pg", "--runs", str(runs),
                           "--steps", str(steps), "--url", dbos_url, *more], capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    if "xids" in result:
        result["write_transactions_per_step"] = round(result.pop("xids") / (runs * steps), 3)
    result["write_transactions_with_launch"] = next_xid(url) - before
    result["concurrency"] = concurrency
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
    return result


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


def in_process(url: str, folder: Path, runs: int, steps: int, tag: str = "") -> dict:
    store_url = fresh_schema(url, "bench_runner")
    machine = write_machine(folder, steps)
    runner = Runner(Home(folder / f"runner{tag}", store=store_url).ensure(), clock=FakeClock())
    runner.launch(machine, {"i": -1}, run_id="warm-up")  # the schema, the pool, the imports
    # A backend reports its statistics up to 10 s late while it idles, at once when it ends:
    # the pool is closed before each count (and reopened by the first run).
    runner.home.store.close()  # type: ignore[attr-defined]
    xacts, appends, xids = counters(store_url)
    began = time.perf_counter()
    for i in range(runs):
        if runner.launch(machine, {"i": i}, run_id=f"run{i:06d}").status != "finished":
            raise RuntimeError(f"run{i:06d} did not finish")
    elapsed = time.perf_counter() - began
    runner.home.store.close()  # type: ignore[attr-defined]
    time.sleep(0.2)  # the closed sessions' last statistics land
    xacts2, appends2, xids2 = counters(store_url)
    total = runs * steps
    return {"runs": runs, "steps_per_run": steps, "seconds": round(elapsed, 3),
            "durable_steps_per_s": round(total / elapsed, 1), "ms_per_step": round(elapsed * 1000 / total, 3),
            "appends_per_step": round((appends2 - appends) / total, 3),
            "durable_commits_per_step": round(durable_commits(store_url) / total, 3),
            "write_transactions_per_step": round((xids2 - xids) / total, 3),
            "transactions_per_step": round((xacts2 - xacts - 3) / total, 3)}  # 3: counters' own


def durable_commits(url: str) -> int:
    """Transactions that inserted journal lines (each waited for the disk), warm-up excluded."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(DISTINCT xmin::text) FROM ratchet_records"
                           " WHERE run_id <> 'warm-up'").fetchone()
    return int(row[0]) if row else 0


def drive_lanes(driver: Driver, machine: Path, runs: int) -> None:
    """The N runs over the driver's lanes (engine.run.concurrent), each checked."""
    outcomes = driver.drive([Launch(machine, {"i": i}, run_id=f"run{i:06d}") for i in range(runs)])
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            raise RuntimeError(f"run{i:06d} failed") from outcome
        if outcome.status != "finished":
            raise RuntimeError(f"run{i:06d} did not finish")


def in_lanes(url: str, folder: Path, runs: int, steps: int, lanes: int, tag: str = "") -> dict:
    """N runs x K steps driven by `lanes` threads in one process (see the module's docstring)."""
    store_url = fresh_schema(url, "bench_lanes")
    machine = write_machine(folder, steps)
    home = Home(folder / f"lanes{lanes}{tag}", store=store_url).ensure()
    driver = Driver(home, threads=lanes, clock=FakeClock())
    driver.runners[0].launch(machine, {"i": -1}, run_id="warm-up")
    home.store.close()  # type: ignore[attr-defined]  # statistics: see in_process
    xacts, appends, xids = counters(store_url)
    began = time.perf_counter()
    cpu = time.process_time()
    drive_lanes(driver, machine, runs)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    group = home.store.group()  # type: ignore[attr-defined]
    batches, grouped = group.batches, group.appends
    home.store.close()  # type: ignore[attr-defined]
    time.sleep(0.2)
    xacts2, appends2, xids2 = counters(store_url)
    total = runs * steps
    return {"lanes": lanes, "runs": runs, "steps_per_run": steps, "seconds": round(elapsed, 3),
            "durable_steps_per_s": round(total / elapsed, 1), "ms_per_step": round(elapsed * 1000 / total, 3),
            "client_cpu_ms_per_step": round(cpu * 1000 / total, 3),
            "appends_per_step": round((appends2 - appends) / total, 3),
            "durable_commits_per_step": round(durable_commits(store_url) / total, 3),
            "appends_per_batch": round(grouped / batches, 2) if batches else None,
            "write_transactions_per_step": round((xids2 - xids) / total, 3),
            "transactions_per_step": round((xacts2 - xacts - 3) / total, 3)}


class RoundTrips:
    """Counts this process's round trips to the server while active: each `execute` outside
    a pipeline is one, a whole pipeline block is one (psycopg's own methods, wrapped)."""

    def __init__(self) -> None:
        self.count = 0
        self._guard = threading.Lock()  # lanes count from several threads

    def _one(self) -> None:
        with self._guard:
            self.count += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[RoundTrips]:
        execute, pipeline = psycopg.Connection.execute, psycopg.Connection.pipeline
        depth: dict[int, int] = {}
        counter = self

        def counted_execute(conn, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not depth.get(id(conn)):
                counter._one()
            return execute(conn, *args, **kwargs)

        @contextlib.contextmanager
        def counted_pipeline(conn):  # type: ignore[no-untyped-def]
            if not depth.get(id(conn)):
                counter._one()
            depth[id(conn)] = depth.get(id(conn), 0) + 1
            try:
                with pipeline(conn) as pipe:
                    yield pipe
            finally:
                depth[id(conn)] -= 1

        psycopg.Connection.execute, psycopg.Connection.pipeline = counted_execute, counted_pipeline  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            psycopg.Connection.execute, psycopg.Connection.pipeline = execute, pipeline  # type: ignore[method-assign]


def round_trips(url: str, folder: Path, runs: int, steps: int, lanes: int = 1) -> dict:
    """Ratchet's round trips per step in one process, one run at a time or with `lanes` threads
    (untimed: counting costs CPU; one at a time, the count does not vary)."""
    store_url = fresh_schema(url, "bench_round_trips")
    machine = write_machine(folder, steps)
    home = Home(folder / f"round-trips-{lanes}", store=store_url).ensure()
    driver = Driver(home, threads=lanes, clock=FakeClock())
    driver.runners[0].launch(machine, {"i": -1}, run_id="warm-up")
    with RoundTrips().counting() as trips:
        drive_lanes(driver, machine, runs)
    home.store.close()  # type: ignore[attr-defined]
    return {"runs": runs, "lanes": lanes, "round_trips_per_step": round(trips.count / (runs * steps), 3),
            "round_trips_per_run": round(trips.count / runs, 2),
            "durable_commits_per_step": round(durable_commits(store_url) / (runs * steps), 3)}


def _ts(line: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(line)["ts"])


def supervised(url: str, folder: Path, runs: int, steps: int, supervisors: int, workers: int, tag: str = "") -> dict:
    store_url = fresh_schema(url, f"bench_sup{supervisors}")
    machine = write_machine(folder, steps)
    starter = Runner(Home(folder / f"sup{supervisors}{tag}-start", store=store_url).ensure(), clock=FakeClock())
    for i in range(runs):
        starter.start(machine, {"i": i}, run_id=f"run{i:06d}")
    for s in range(supervisors):  # every home on one store seals with the same key (README "Sealed journals")
        keys = folder / f"sup{supervisors}{tag}-host{s}" / "keys"
        shutil.copytree(starter.home.root / "keys", keys, dirs_exist_ok=True)
    xacts, appends, xids = counters(store_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")} | {"RATCHET_STORE": store_url}
    procs = []
    with contextlib.ExitStack() as stack:
        for s in range(supervisors):
            log = stack.enter_context(open(folder / f"sup{supervisors}{tag}-{s}.log", "wb"))
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--workers", str(workers),
                 "--home", str(folder / f"sup{supervisors}{tag}-host{s}")], env=env, cwd=folder, stderr=log))
        try:
            _wait_finished(store_url, runs, timeout=600, procs=procs)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
    xacts2, appends2, xids2 = counters(store_url)
    with psycopg.connect(store_url, autocommit=True) as conn:
        first = [row[0] for row in conn.execute("SELECT line FROM ratchet_records WHERE seq = 2")]
        last = [row[0] for row in conn.execute(
            "SELECT line FROM ratchet_records r JOIN ratchet_runs USING (run_id) WHERE r.seq = ratchet_runs.last_seq")]
    elapsed = (max(map(_ts, last)) - min(map(_ts, first))).total_seconds()
    total = runs * steps
    return {"supervisors": supervisors, "workers_each": workers, "runs": runs, "steps_per_run": steps,
            "seconds": round(elapsed, 3), "durable_steps_per_s": round(total / elapsed, 1),
            "appends_per_step": round((appends2 - appends) / total, 3),
            "write_transactions_per_step": round((xids2 - xids) / total, 3),
            "transactions_per_step": round((xacts2 - xacts) / total, 3)}


# Not "the last record": a sealed run ends with its seal, after run_finished.
FINISHED = "SELECT count(DISTINCT run_id) FROM ratchet_records WHERE position('\"run_finished\"'::bytea IN line) > 0"


def _wait_finished(url: str, runs: int, timeout: float, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if all(proc.poll() is not None for proc in procs):
                raise RuntimeError("every supervisor exited before the runs finished: see their logs in the folder")
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


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "rounds": values}


def one_round(url: str, folder: Path, args: argparse.Namespace, round_: int) -> dict:
    part, tag = folder, f"-r{round_}"  # one machine folder: its actions' module is imported once
    measures: dict[str, Callable[[], dict]] = {
        "server_bound": lambda: server_bound(url, args.seconds),
        "bare_journal": lambda: bare_journal(url, args.runs, args.steps),
        "ratchet_one_process": lambda: in_process(url, part, args.runs, args.steps, tag)}
    for t in args.lanes:
        measures[f"ratchet_lanes_{t}"] = lambda t=t: in_lanes(url, part, args.runs, args.steps, t, tag)
    measures["dbos_on_postgresql"] = lambda: dbos_on_pg(url, args.runs, args.steps, round_)
    if args.dbos_concurrency:
        for t in args.lanes:
            measures[f"dbos_concurrency_{t}"] = lambda t=t: dbos_on_pg(url, args.runs, args.steps, round_, t)
    if args.supervisors:
        measures |= {
            "ratchet_1_supervisor": lambda: supervised(url, part, args.runs, args.steps, 1, args.workers, tag),
            "ratchet_2_supervisors": lambda: supervised(url, part, args.runs, args.steps, 2, args.workers, tag),
            "ratchet_1_supervisor_more_workers": lambda: supervised(url, part, args.runs, args.steps, 1,
                                                                    args.more_workers, f"{tag}-w{args.more_workers}")}
    result = {}
    for name, measure in measures.items():
        result[name] = measure()
        print(f"round {round_ + 1}: {name}: {json.dumps(result[name])[:200]}", file=sys.stderr, flush=True)
    floor = result["bare_journal"]["steps_per_s"]
    one = result["ratchet_one_process"]
    ratios = {"vs_bare_journal": one["durable_steps_per_s"] / floor,
              "appends_vs_server_bound": one["durable_steps_per_s"] * one["appends_per_step"]
              / result["server_bound"]["commits_per_s"]}
    # Each side's best configuration in this round, named: Ratchet in one process (one run at a
    # time, or T lanes) or one supervisor with N workers; DBOS with one workflow at a time or T.
    ratchet = {"one process": one["durable_steps_per_s"],
               **{f"{t} lanes": result[f"ratchet_lanes_{t}"]["durable_steps_per_s"] for t in args.lanes},
               **{f"supervise --workers {result[name]['workers_each']}": result[name]["durable_steps_per_s"]
                  for name in ("ratchet_1_supervisor", "ratchet_1_supervisor_more_workers") if name in result}}
    dbos = {f"{result[name].get('concurrency', 1)} at once": result[name]["steps_per_s"]
            for name in result if name.startswith("dbos_") and result[name].get("steps_per_s")}
    lanes = {t: result[f"ratchet_lanes_{t}"]["durable_steps_per_s"] for t in args.lanes}
    if lanes:
        best_lanes = max(lanes, key=lambda t: lanes[t])
        ratios["best_lanes"] = best_lanes
        ratios["best_lanes_vs_bare_journal"] = lanes[best_lanes] / floor
    if dbos.get("1 at once"):
        ratios["vs_dbos"] = one["durable_steps_per_s"] / dbos["1 at once"]
    best = max(ratchet, key=lambda name: ratchet[name])
    ratios["best"] = best  # type: ignore[assignment]
    ratios["best_vs_bare_journal"] = ratchet[best] / floor
    if dbos:
        best_dbos = max(dbos, key=lambda name: dbos[name])
        ratios["best_dbos"] = best_dbos  # type: ignore[assignment]
        ratios["best_vs_best_dbos"] = ratchet[best] / dbos[best_dbos]
    result["ratios"] = ratios
    return result


FIGURES = {  # (what, where in a round's result)
    "server bound, commits/s": ("server_bound", "commits_per_s"),
    "bare journal, steps/s": ("bare_journal", "steps_per_s"),
    "ratchet one process, steps/s": ("ratchet_one_process", "durable_steps_per_s"),
    "ratchet one process, durable commits/step": ("ratchet_one_process", "durable_commits_per_step"),
    "ratchet one process, write transactions/step": ("ratchet_one_process", "write_transactions_per_step"),
    "ratchet one process, transactions/step (reads too)": ("ratchet_one_process", "transactions_per_step"),
}
LANE_FIGURES = {
    "ratchet {t} lanes, steps/s": "durable_steps_per_s",
    "ratchet {t} lanes, client CPU ms/step": "client_cpu_ms_per_step",
    "ratchet {t} lanes, appends/step": "appends_per_step",
    "ratchet {t} lanes, durable commits/step": "durable_commits_per_step",
    "ratchet {t} lanes, appends per batch": "appends_per_batch",
    "ratchet {t} lanes, write transactions/step": "write_transactions_per_step",
}
LATER_FIGURES = {
    "dbos on postgresql, steps/s": ("dbos_on_postgresql", "steps_per_s"),
    "dbos on postgresql, write transactions/step": ("dbos_on_postgresql", "write_transactions_per_step"),
}
DBOS_FIGURES = {
    "dbos {t} at once, steps/s": "steps_per_s",
    "dbos {t} at once, write transactions/step": "write_transactions_per_step",
}
SUPERVISOR_FIGURES = {
    "ratchet 1 supervisor, steps/s": ("ratchet_1_supervisor", "durable_steps_per_s"),
    "ratchet 2 supervisors, steps/s": ("ratchet_2_supervisors", "durable_steps_per_s"),
    "ratchet 1 supervisor, --more-workers, steps/s": ("ratchet_1_supervisor_more_workers", "durable_steps_per_s"),
}
RATIO_FIGURES = {
    "ratchet one process / dbos one at a time": ("ratios", "vs_dbos"),
    "ratchet one process / bare journal": ("ratios", "vs_bare_journal"),
    "ratchet best lanes / bare journal": ("ratios", "best_lanes_vs_bare_journal"),
    "ratchet best / bare journal": ("ratios", "best_vs_bare_journal"),
    "ratchet best / dbos best": ("ratios", "best_vs_best_dbos"),
}


def figures(lanes: list[int]) -> dict[str, tuple[str, str]]:
    found = dict(FIGURES)
    for t in lanes:
        found |= {what.format(t=t): (f"ratchet_lanes_{t}", key) for what, key in LANE_FIGURES.items()}
    found |= LATER_FIGURES
    for t in lanes:
        found |= {what.format(t=t): (f"dbos_concurrency_{t}", key) for what, key in DBOS_FIGURES.items()}
    return found | SUPERVISOR_FIGURES | RATIO_FIGURES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lanes", default="2,4,8,16", help="lane counts of the in-process measures (comma-separated)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--more-workers", type=int, default=4, help="workers of the third supervised measure")
    parser.add_argument("--no-supervisors", dest="supervisors", action="store_false",
                        help="skip the `ratchet supervise` measures (the longest)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the server-bound probe")
    parser.add_argument("--url", help="an existing server (default: a private one, started here)")
    args = parser.parse_args()
    args.lanes = [int(t) for t in args.lanes.split(",") if t.strip()]
    args.dbos_concurrency = dbos_concurrency_supported()
    if not args.dbos_concurrency:
        print("note: bench/peers.py has no --concurrency: DBOS runs one workflow at a time only", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the private server and the supervisors
    load = [round(x, 2) for x in os.getloadavg()]
    with server(args.url) as url, tempfile.TemporaryDirectory(prefix="ratchet-pg-bench-") as tmp:
        folder = Path(tmp)
        with psycopg.connect(url, autocommit=True) as conn:
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                        for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")}
        rounds = [one_round(url, folder, args, r) for r in range(args.rounds)]
        trips = [round_trips(url, folder, min(args.runs, 100), args.steps)]
        if args.lanes:
            trips.append(round_trips(url, folder, min(args.runs, 100), args.steps, max(args.lanes)))
    load.extend(round(x, 2) for x in os.getloadavg())
    summary = {}
    for what, (part, key) in figures(args.lanes).items():
        values = [r[part][key] for r in rounds if part in r and r[part].get(key) is not None]
        if values:
            summary[what] = spread(values)
    targets = {"ratchet best / dbos best >= 5": summary.get("ratchet best / dbos best", {}).get("median", 0) >= 5,
               "ratchet best / bare journal >= 0.7": summary["ratchet best / bare journal"]["median"] >= 0.7}
    best = [r["ratios"]["best"] for r in rounds]
    best_dbos = [r["ratios"].get("best_dbos", "-") for r in rounds]
    print(json.dumps({"server": settings, "runs": args.runs, "steps": args.steps, "load_before_after": load,
                      "summary": summary, "ratchet_round_trips": trips,
                      "targets_met_by_the_median": targets, "rounds": rounds}, indent=2))
    for trip in trips:
        print(f"ratchet, {trip['lanes']} lane(s): round trips/step (counted) {trip['round_trips_per_step']:.2f},"
              f" durable commits/step {trip['durable_commits_per_step']:.2f}", file=sys.stderr)
    for what, figure in summary.items():
        print(f"{what:<52} {figure['median']:>10,.2f}  ({figure['min']:,.2f}-{figure['max']:,.2f})", file=sys.stderr)
    print(f"ratchet best, by round: {', '.join(best)}; dbos best, by round: {', '.join(best_dbos)}", file=sys.stderr)
    print(f"load average (1, 5, 15 min) before and after: {load}", file=sys.stderr)
    for target, met in targets.items():
        print(f"target {target}: {'met' if met else 'MISSED'}", file=sys.stderr)


if __name__ == "__main__":
    main()
