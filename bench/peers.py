"""Peer engines for the runner benchmark: Ratchet's N runs x K steps workload on DBOS and LangGraph.

Each peer runs in a fresh interpreter (`measure_peer`), so its imports and background
threads cannot disturb Ratchet's measurement and a crash of one peer cannot end the
benchmark. The child prints exactly one JSON line on stdout:

    python bench/peers.py dbos      --runs 2000 --steps 5 --workdir DIR
    python bench/peers.py dbos-wal  --runs 2000 --steps 5 --workdir DIR
    python bench/peers.py langgraph --runs 2000 --steps 5 --workdir DIR
    python bench/peers.py dbos-pg   --runs 300 --steps 5 --url postgresql://...   (bench/pg_bench.py)
    python bench/peers.py dbos-wal  --runs 2000 --steps 5 --concurrency 4   (4 workflows at once)
    python bench/peers.py fsync     --workdir DIR [--seconds 2]
    python bench/peers.py all       --runs 2000 --steps 5 [--peer-runs N] [--fsyncs]

`measure_peer(name, n, k)` runs one child and returns its dict (or {"error": ...});
`fsync_rate(workdir)` probes the disk; `count_fsyncs(name, n, k)` counts a peer's
fsync-family calls per step with strace (`count_syncs(cmd)` does it for any command).

The workload is the one Ratchet runs: N workflows run one after another in one process,
each of K trivial steps returning `{"step_i": i}` merged into the workflow's data, every
step durably recorded before the next one starts. Each peer keeps its own durability
defaults; the SQLite settings it actually used (`PRAGMA synchronous`, `journal_mode`)
are read back from its own connection and reported, so a peer that is not fully
durable shows it. Set-up (DBOS.launch, graph compile, schema creation) is timed apart
from the workload (`setup_seconds`); `seconds` covers the N workflows only.

`dbos-wal` is DBOS with its SQLite file in WAL mode at `synchronous=FULL` (each commit
fsyncs the WAL: just as durable as its default rollback journal, and about twice as fast
here); Ratchet's ratio to DBOS is taken against the faster of the two.

By default runs are sequential for every engine (as Ratchet's Runner drives them): DBOS
is launched once and its workflows are called directly, not through a queue; LangGraph
invokes one thread after another on one SqliteSaver. `--concurrency T` runs T at once, as
Ratchet's concurrent driver does (engine.run.concurrent): T Python threads each call the
next workflow directly (DBOS: a workflow function called from T threads, DBOS's own
concurrency for synchronous code; a queue would add its polling and its rows), or invoke
the next LangGraph thread (its own thread_id) on the one SqliteSaver, whose connection is
opened with check_same_thread=False and which serialises its cursors with its own lock.
Each peer's workload is bracketed by a 0.5 s fsync probe
(`disk_fsyncs_per_s_before_after`): a drop there means something else was using the disk,
and the numbers are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PEERS = ("dbos", "dbos-wal", "langgraph")
PROBE_SECONDS = 0.5  # fsync probe before and after each peer's workload
SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _run_id(j: int) -> str:
    return f"run-{j:06d}"


def _result(engine: str, n_runs: int, k_steps: int, seconds: float, **extra) -> dict:
    steps = n_runs * k_steps
    return {
        "engine": engine,
        "runs": n_runs,
        "steps_per_run": k_steps,
        "steps": steps,
        "seconds": round(seconds, 4),
        "steps_per_s": round(steps / seconds, 1) if seconds > 0 else None,
        **extra,
    }


def _each(n_runs: int, concurrency: int, one: Callable[[int], None]) -> float:
    """Seconds to call `one(j)` for j in 0..n-1: one after another, or from `concurrency`
    threads, each taking the next j as it finishes one (every result is checked by `one`)."""
    t0 = time.perf_counter()
    if concurrency <= 1:
        for j in range(n_runs):
            one(j)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(one, range(n_runs)):  # re-raises the first failure
                pass
    return time.perf_counter() - t0


def _pragmas(execute) -> dict:
    """`synchronous` and `journal_mode` as seen by the connection the engine writes with."""
    sync = int(execute("PRAGMA synchronous"))
    return {
        "sqlite_synchronous": SYNCHRONOUS.get(sync, str(sync)),
        "sqlite_journal_mode": str(execute("PRAGMA journal_mode")).upper(),
        "sqlite_version": sqlite3.sqlite_version,
    }


def _durable(pragmas: dict) -> bool:
    """Is every commit on disk when it returns? NORMAL is not: in WAL mode a commit then
    survives a process crash but not a power loss (the WAL is synced at checkpoints only)."""
    return pragmas["sqlite_synchronous"] in ("FULL", "EXTRA")


def _durability_note(pragmas: dict) -> str:
    mode, sync = pragmas["sqlite_journal_mode"], pragmas["sqlite_synchronous"]
    if mode == "WAL":
        return f"WAL + synchronous={sync}: " + (
            "each commit fsyncs the WAL" if _durable(pragmas)
            else "commits are not fsync'd (a power loss can lose the last ones)")
    if sync == "FULL":
        return (f"rollback journal ({mode}) + synchronous=FULL: each commit fsyncs the journal "
                "and the database, but the journal's unlink (the commit point) is not "
                "dir-synced (that is EXTRA): a power loss right after a commit may roll it back")
    return f"rollback journal ({mode}) + synchronous={sync}"


def _sqlite_wal_full(db_path: Path) -> None:
    """Put `db_path` in WAL mode (a property of the file: every later connection uses it) and
    make every SQLAlchemy connection of this process run `synchronous=FULL`, so each commit
    still fsyncs (the WAL) before it returns: durable, as the default rollback journal is."""
    import sqlalchemy as sa

    with sqlite3.connect(db_path) as conn:
        if str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).upper() != "WAL":
            raise RuntimeError(f"{db_path}: SQLite refused WAL mode")

    @sa.event.listens_for(sa.engine.Engine, "connect")
    def _full(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA synchronous=FULL")


def run_dbos(n_runs: int, k_steps: int, workdir: Path, *, wal: bool = False, concurrency: int = 1) -> dict:
    """N DBOS workflows of K `@DBOS.step()` calls, `concurrency` at a time, SQLite system
    database (`wal`: in WAL mode at synchronous=FULL)."""
    import sqlalchemy as sa
    from dbos import DBOS, DBOSConfig

    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "dbos.sqlite"
    if wal:
        _sqlite_wal_full(db_path)

    chain = _dbos_chain()
    t0 = time.perf_counter()
    config: DBOSConfig = {
        "name": "ratchet-bench",
        "system_database_url": f"sqlite:///{db_path}",
        "log_level": "WARNING",
    }
    dbos = DBOS(config=config)
    DBOS.launch()
    setup = time.perf_counter() - t0
    try:
        engine = dbos._sys_db.engine  # the engine DBOS itself writes with
        with engine.connect() as conn:
            pragmas = _pragmas(lambda sql: conn.execute(sa.text(sql)).scalar())

        seconds = _drive_dbos(chain, n_runs, k_steps, concurrency)

        with engine.connect() as conn:
            recorded = conn.execute(sa.text("SELECT count(*) FROM operation_outputs")).scalar()
    finally:
        DBOS.destroy(destroy_registry=True)
    from importlib.metadata import version

    return _result(
        "dbos-wal" if wal else "dbos",
        n_runs,
        k_steps,
        seconds,
        setup_seconds=round(setup, 3),
        concurrency=concurrency,
        version=version("dbos"),
        step_records=recorded,
        verified=recorded == n_runs * k_steps,
        durable_commits=_durable(pragmas),
        durability_note=_durability_note(pragmas),
        **pragmas,
    )


def _dbos_chain() -> Any:
    """The workflow every DBOS configuration runs: K steps, each a checkpointed DBOS step."""
    from dbos import DBOS

    @DBOS.step()
    def step(i: int) -> dict:
        return {f"step_{i}": i}

    @DBOS.workflow()
    def chain(input: dict, k: int) -> dict:
        data: dict = {}
        for i in range(k):
            data.update(step(i))
        return data

    return chain


def _drive_dbos(chain: Any, n_runs: int, k_steps: int, concurrency: int = 1) -> float:
    """Seconds to run N workflows, `concurrency` at a time (threads), each checked."""
    from dbos import SetWorkflowID

    expected = {f"step_{i}": i for i in range(k_steps)}

    def one(j: int) -> None:
        with SetWorkflowID(_run_id(j)):  # a context variable: each thread sets its own
            out = chain({"run": j}, k_steps)
        if out != expected:
            raise RuntimeError(f"dbos: workflow {_run_id(j)} returned {out!r}")

    return _each(n_runs, concurrency, one)


def run_dbos_pg(n_runs: int, k_steps: int, url: str, concurrency: int = 1) -> dict:
    """The same N x K workload on DBOS with a PostgreSQL system database (its production
    backend): `url` names the database, which DBOS creates if missing (bench/pg_bench.py
    gives it a fresh one on the same server as Ratchet's store)."""
    import sqlalchemy as sa
    from dbos import DBOS, DBOSConfig

    chain = _dbos_chain()
    t0 = time.perf_counter()
    config: DBOSConfig = {"name": "ratchet-bench", "system_database_url": url, "log_level": "WARNING"}
    dbos = DBOS(config=config)
    DBOS.launch()
    setup = time.perf_counter() - t0
    try:
        engine = dbos._sys_db.engine  # the engine DBOS itself writes with
        with engine.connect() as conn:
            settings = {name: conn.execute(sa.text(f"SHOW {name}")).scalar()
                        for name in ("server_version", "fsync", "synchronous_commit")}
        next_xid = sa.text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        with engine.connect() as conn:
            xid = conn.execute(next_xid).scalar()
        seconds = _drive_dbos(chain, n_runs, k_steps, concurrency)
        with engine.connect() as conn:  # transaction ids handed out: DBOS's write transactions
            xids = conn.execute(next_xid).scalar() - xid
        with engine.connect() as conn:
            recorded = conn.execute(sa.text("SELECT count(*) FROM dbos.operation_outputs")).scalar()
    finally:
        DBOS.destroy(destroy_registry=True)
    from importlib.metadata import version

    return _result("dbos-pg", n_runs, k_steps, seconds, setup_seconds=round(setup, 3), concurrency=concurrency,
                   version=version("dbos"),
                   step_records=recorded, verified=recorded == n_runs * k_steps, xids=xids,
                   durable_commits=settings["fsync"] == "on" and settings["synchronous_commit"] == "on",
                   **{f"pg_{k}": v for k, v in settings.items()})


def run_langgraph(n_runs: int, k_steps: int, workdir: Path, concurrency: int = 1) -> dict:
    """N LangGraph threads through a chain of K nodes, SqliteSaver, `durability="sync"`,
    `concurrency` at a time (Python threads sharing the saver, each with its own thread_id)."""
    from typing import TypedDict

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "langgraph.sqlite"

    fields = {"run": int, **{f"step_{i}": int for i in range(k_steps)}}
    State = TypedDict("State", fields, total=False)  # type: ignore[misc]

    def node(i: int):
        def step(state: dict) -> dict:
            return {f"step_{i}": i}

        return step

    t0 = time.perf_counter()
    builder = StateGraph(State)
    prev = START
    for i in range(k_steps):
        builder.add_node(f"step_{i}_node", node(i))
        builder.add_edge(prev, f"step_{i}_node")
        prev = f"step_{i}_node"
    builder.add_edge(prev, END)

    # What `SqliteSaver.from_conn_string` does, keeping the connection to read its pragmas.
    conn = sqlite3.connect(str(db_path), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        graph = builder.compile(checkpointer=saver)
        setup = time.perf_counter() - t0
        with saver.lock:
            pragmas = _pragmas(lambda sql: conn.execute(sql).fetchone()[0])

        def one(j: int) -> None:
            config = {"configurable": {"thread_id": _run_id(j)}}
            out = graph.invoke({"run": j}, config=config, durability="sync")
            if any(out.get(f"step_{i}") != i for i in range(k_steps)):
                raise RuntimeError(f"langgraph: thread {_run_id(j)} ended with {out!r}")

        seconds = _each(n_runs, concurrency, one)

        with saver.lock:
            checkpoints = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
            writes = conn.execute("SELECT count(*) FROM writes").fetchone()[0]
    finally:
        conn.close()
    from importlib.metadata import version

    return _result(
        "langgraph",
        n_runs,
        k_steps,
        seconds,
        setup_seconds=round(setup, 3),
        concurrency=concurrency,
        version=version("langgraph"),
        checkpoint_sqlite_version=version("langgraph-checkpoint-sqlite"),
        durability="sync",
        checkpoints=checkpoints,
        writes=writes,
        # input checkpoint + one per node; `sync` puts each before the next node runs
        verified=checkpoints >= n_runs * (k_steps + 1),
        durable_commits=_durable(pragmas),
        durability_note=_durability_note(pragmas),
        **pragmas,
    )


def fsync_rate(workdir: Path, seconds: float = 2.0, line: bytes = b"x" * 150 + b"\n") -> dict:
    """The disk's rate of durable appends in `workdir`: write one line, fdatasync, repeat.

    Same pattern as Ratchet's journal writer (O_APPEND file, the size grows, fdatasync),
    so `fsyncs_per_s / fsyncs_per_step` bounds Ratchet's steps/s on this disk.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "fsync-probe.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        for _ in range(20):  # warm up: allocate, settle the journal
            os.write(fd, line)
            os.fdatasync(fd)
        count = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            os.write(fd, line)
            os.fdatasync(fd)
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        elapsed = now - t0
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {
        "engine": "fsync",
        "fsyncs": count,
        "seconds": round(elapsed, 4),
        "fsyncs_per_s": round(count / elapsed, 1),
        "mean_fsync_ms": round(1000 * elapsed / count, 4),
        "line_bytes": len(line),
    }


# --- the parent side: fresh interpreters --------------------------------------------


def _child_cmd(name: str, n: int, k: int, workdir: Path, concurrency: int = 1) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), name,
            "--runs", str(n), "--steps", str(k), "--workdir", str(workdir), "--concurrency", str(concurrency)]


def _last_json_line(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line on stdout")


def measure_peer(name: str, n: int, k: int, *, workdir: Path | None = None,
                 timeout: float = 1800.0, requested_runs: int | None = None, concurrency: int = 1) -> dict:
    """Run one peer (or "fsync") in a fresh interpreter and return its JSON result.

    Never raises for a peer failure: returns {"engine": name, "error": ...} instead.
    `requested_runs` > n marks the result as measured on fewer runs than Ratchet.
    """
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix=f"ratchet-bench-{name}-")) if own else Path(workdir)
    try:
        proc = subprocess.run(_child_cmd(name, n, k, workdir, concurrency), capture_output=True,
                              text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            return {"engine": name, "error": f"exit {proc.returncode}: {' | '.join(tail)}"}
        result = _last_json_line(proc.stdout)
    except subprocess.TimeoutExpired:
        return {"engine": name, "error": f"timed out after {timeout:.0f}s"}
    except ValueError as exc:
        return {"engine": name, "error": f"unreadable output: {exc}"}
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    if requested_runs is not None and requested_runs > n:
        result["scaled_from_runs"] = requested_runs  # rate measured on fewer runs
    return result


def count_syncs(cmd: list[str]) -> dict[str, int]:
    """Run `cmd` under `strace -f -c` and return how many fsync-family calls it made, by name."""
    if shutil.which("strace") is None:
        raise RuntimeError("strace not installed")
    with tempfile.TemporaryDirectory(prefix="ratchet-strace-") as tmp:
        summary = Path(tmp) / "strace.txt"
        proc = subprocess.run(["strace", "-f", "-c", "-o", str(summary),
                               "-e", "trace=fsync,fdatasync,msync,sync_file_range", *cmd],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-300:]}")
        rows = re.findall(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$",
                          summary.read_text(), re.MULTILINE)
    return {name: int(calls) for calls, name in rows if name != "total"}


def count_fsyncs(name: str, n: int, k: int) -> dict:
    """fsync-family calls a peer spends per step: strace of n runs minus strace of 0 runs."""
    try:
        with tempfile.TemporaryDirectory(prefix=f"ratchet-strace-{name}-") as tmp:
            full = count_syncs([*_child_cmd(name, n, k, Path(tmp) / "n"), "--no-probe"])
            idle = count_syncs([*_child_cmd(name, 0, k, Path(tmp) / "0"), "--no-probe"])
    except RuntimeError as exc:
        return {"engine": name, "error": f"strace: {exc}"}
    spent = {s: full.get(s, 0) - idle.get(s, 0) for s in sorted(set(full) | set(idle))}
    total = sum(spent.values())
    return {"engine": name, "runs": n, "steps_per_run": k, "syncs": spent,
            "fsyncs_per_step": round(total / (n * k), 3), "fsyncs_per_run": round(total / n, 2)}


# --- the command line --------------------------------------------------------------


def _summary(results: list[dict]) -> str:
    rows = []
    for r in results:
        if "error" in r:
            rows.append(f"{r['engine']:<10} ERROR {r['error']}")
        elif r["engine"] == "fsync":
            rows.append(f"{'disk':<10} {r['fsyncs_per_s']:>10.1f} fsyncs/s "
                        f"(append + fdatasync, {r['mean_fsync_ms']} ms each)")
        else:
            note = (f"  [rate from {r['runs']} runs, not {r['scaled_from_runs']}]"
                    if "scaled_from_runs" in r else "")
            if "disk_fsyncs_per_s_before_after" in r:
                before, after = r["disk_fsyncs_per_s_before_after"]
                note += f"  disk fsyncs/s before/after: {before}/{after}"
            rows.append(f"{r['engine']:<10} {r['steps_per_s']:>10.1f} steps/s  "
                        f"{r['runs']}x{r['steps_per_run']} in {r['seconds']:.2f}s  "
                        f"sqlite synchronous={r['sqlite_synchronous']} "
                        f"journal_mode={r['sqlite_journal_mode']}"
                        f"{'' if r['durable_commits'] else '  NOT DURABLE PER COMMIT'}{note}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=(*PEERS, "dbos-pg", "fsync", "all"))
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peer-runs", type=int, default=None,
                        help="(all) run the peers on fewer runs; steps/s is what compares")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--url", help="(dbos-pg) the PostgreSQL system database DBOS uses")
    parser.add_argument("--seconds", type=float, default=2.0, help="(fsync) probe length")
    parser.add_argument("--concurrency", type=int, default=1, metavar="T",
                        help="(dbos, dbos-wal, dbos-pg, langgraph) run T workflows at once, in threads (default 1)")
    parser.add_argument("--no-probe", action="store_true",
                        help="(dbos, langgraph) skip the disk probe around the workload")
    parser.add_argument("--fsyncs", action="store_true",
                        help="(all) also count each peer's fsyncs per step with strace")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency {args.concurrency}: at least 1")

    if args.what == "dbos-pg":
        if not args.url:
            parser.error("dbos-pg: --url is required; hint: postgresql://USER@HOST:PORT/DATABASE")
        print(json.dumps(run_dbos_pg(args.runs, args.steps, args.url, args.concurrency)), flush=True)
        return 0
    if args.what != "all":
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"ratchet-bench-{args.what}-"))
        if args.what == "fsync":
            result = fsync_rate(workdir, args.seconds)
        else:
            probe = args.runs > 0 and not args.no_probe
            before = fsync_rate(workdir, PROBE_SECONDS)["fsyncs_per_s"] if probe else None
            if args.what == "langgraph":
                result = run_langgraph(args.runs, args.steps, workdir, args.concurrency)
            else:
                result = run_dbos(args.runs, args.steps, workdir, wal=args.what == "dbos-wal",
                                  concurrency=args.concurrency)
            if before is not None:
                # the disk around the workload: a drop means something else shared it
                after = fsync_rate(workdir, PROBE_SECONDS)["fsyncs_per_s"]
                result["disk_fsyncs_per_s_before_after"] = [before, after]
        print(json.dumps(result), flush=True)
        return 0

    peer_runs = args.peer_runs or args.runs
    results = [measure_peer("fsync", 0, 0, workdir=args.workdir)]
    for name in PEERS:
        results.append(measure_peer(name, peer_runs, args.steps, requested_runs=args.runs,
                                    workdir=args.workdir and args.workdir / name))
    if args.fsyncs:
        results += [count_fsyncs(name, 200, args.steps) for name in PEERS]
    for r in results:
        print(json.dumps(r))
    print(_summary([r for r in results if "fsyncs_per_step" not in r]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
