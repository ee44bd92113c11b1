"""Supervisor benchmark: inbox latency, and memory and idle CPU with 10,000 waiting runs.

    python bench/supervisor_bench.py [--drops 200] [--waiting 10000] [--idle 20] [--workers 2]

Prints one JSON document. Two measurements, each on a real `ratchet supervise`
subprocess over a fresh home in a temporary folder:

- latency: a run waits for `approve`; an approval file is written in inbox/.tmp, fsync'd,
  and renamed into inbox/ at t0. The latency is the `ts` of the run's next journal record
  (`trigger_received`, stamped by the worker's system clock) minus t0. One drop at a time
  (the next after the previous record), `--drops` times: p50, p99, max in milliseconds.
- idle: `--waiting` runs wait for an approval two days away (journals written directly
  with the journal API: `run_started` + `waiting`, exactly what the runner writes). After
  the supervisor logs that it has read them all (start-up time), RSS of the supervisor,
  its workers and forkserver (from /proc, no psutil) and the supervisor's CPU time over
  `--idle` seconds of doing nothing (default --rescan 5, so rescans are included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.definition.loader import load_machine  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.run.clock import iso  # noqa: E402
from engine.run.runner import Runner  # noqa: E402
from journal import FileStore, RunStarted, Waiting  # noqa: E402

MACHINE = """
name: bench_approval
version: 1
initial: review
states:
  review: {approvers: [alice], timeout: 2d}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def supervise(home: Path, cwd: Path, workers: int) -> subprocess.Popen:
    env = {**os.environ, "RATCHET_HOME": str(home)}
    env.pop("RATCHET_CLOCK_FILE", None)
    cmd = [sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--workers", str(workers)]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)


def wait_started(proc: subprocess.Popen) -> float:
    """Block until the supervisor logs its start-up line; seconds it took."""
    began = time.monotonic()
    for line in proc.stderr:
        if "supervising" in line:
            return time.monotonic() - began
    raise RuntimeError(f"supervisor exited with {proc.wait()} before starting")


def drop(home: Home, run_id: str, n: int) -> float:
    """Write an approval in .tmp, fsync, rename into the inbox; the wall time of the rename."""
    name = f"bench-{n:05d}.json"
    tmp = home.inbox_tmp / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, json.dumps({"run": run_id, "trigger": "approve", "by": "alice"}).encode())
    os.fsync(fd)
    os.close(fd)
    t0 = time.time()
    os.rename(tmp, home.inbox / name)
    return t0


def next_record_ts(path: Path, size: int, timeout: float = 30.0) -> float:
    """Wall time (`ts`) of the first record appended after byte `size`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path, "rb") as f:
            f.seek(size)
            line = f.readline()
        if line.endswith(b"\n"):
            ts = json.loads(line)["ts"]
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        time.sleep(0.0005)
    raise TimeoutError(f"{path}: no new record within {timeout}s")


def latency(work: Path, drops: int, workers: int) -> dict:
    home = Home(work / "latency").ensure()
    machine = work / "bench_approval.yaml"
    runner = Runner(home, machines_dir=work)
    run_ids = [runner.start(machine, {}, run_id=f"lat-{i:04d}") for i in range(drops)]
    for run_id in run_ids:
        runner.advance(run_id)  # to `waiting`, before the supervisor starts
    proc = supervise(home.root, work, workers)
    try:
        wait_started(proc)
        samples = []
        for n, run_id in enumerate(run_ids):
            path = home.store.path(run_id)
            size = path.stat().st_size
            t0 = drop(home, run_id, n)
            samples.append((next_record_ts(path, size) - t0) * 1000)
    finally:
        proc.terminate()
        proc.wait(30)
    samples.sort()
    return {"drops": drops, "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
            "max_ms": round(samples[-1], 2), "mean_ms": round(statistics.fmean(samples), 2)}


def create_waiting(home: Home, machine_path: Path, count: int) -> float:
    """`count` journals of runs waiting in `review`, written directly; seconds taken."""
    began = time.monotonic()
    machine = load_machine(machine_path)
    store = FileStore(home.root, durability="none")  # set-up only: durability is not measured here
    now = datetime.now(UTC)
    deadline = iso(now + timedelta(days=2))
    for i in range(count):
        run_id = f"wait-{i:05d}"
        with store.writer(run_id, create=True) as writer:
            writer.append_many([
                RunStarted(run_id=run_id, machine=machine.name, version=machine.spec.version,
                           definition=machine.definition, definition_hash=machine.hash,
                           source=str(machine_path), ts=iso(now)),
                Waiting(state="review", triggers=["approve"], approvers=["alice"], deadline=deadline, ts=iso(now)),
            ])
    os.sync()
    return time.monotonic() - began


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def idle(work: Path, count: int, seconds: float, workers: int) -> dict:
    home = Home(work / "idle").ensure()
    setup = create_waiting(home, work / "bench_approval.yaml", count)
    proc = supervise(home.root, work, workers)
    try:
        startup = wait_started(proc)
        time.sleep(1.0)  # let the workers and forkserver settle
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        others = [p for p in tree(proc.pid) if p != proc.pid]
        result = {
            "waiting_runs": count,
            "setup_s": round(setup, 2),
            "startup_s": round(startup, 2),
            "supervisor_rss_mb": round(rss_mb(proc.pid), 1),
            "children_rss_mb": round(sum(rss_mb(p) for p in others), 1),
            "children": len(others),
            "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
            "idle_seconds": round(t1 - t0, 1),
        }
    finally:
        proc.terminate()
        proc.wait(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=200)
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ratchet-supbench-") as tmp:
        work = Path(tmp)
        (work / "bench_approval.yaml").write_text(MACHINE)
        report = {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "workers": args.workers,
            "latency": latency(work, args.drops, args.workers),
            "idle": idle(work, args.waiting, args.idle, args.workers),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
