"""Supervisor benchmark: start-up, memory, idle CPU and approval latency at 1k-50k waiting runs.

    python bench/supervisor_bench.py [--sizes 1000,10000] [--with-50k] [--idle 60] [--workers 2]

Prints one JSON document. For each size, one real `ratchet supervise` subprocess over a
fresh home in a temporary folder, where that many runs wait for an approval two days
away (journals written directly with the journal API: `run_started` + `waiting`,
exactly what the runner writes), plus the runs whose approvals are timed:

- start-up: until the supervisor logs that it has read every journal;
- RSS and PSS of the supervisor and of every process under it (fork server, workers,
  the mail lane's worker), from /proc (no psutil): RSS counts the pages a forked worker
  shares with its forkserver once per process, PSS splits them;
- idle CPU over `--idle` seconds of doing nothing, of the supervisor and of all of them
  (the default rescan period is included);
- approval latency: an approval file is written in inbox/.tmp, fsync'd and renamed into
  inbox/ at t0; the latency is the `ts` of the run's next journal record
  (`trigger_received`, stamped by the worker's system clock) minus t0, one drop at a
  time: first idle (`--drops`), then while every worker holds a long step (gated steps
  the bench releases only at the end) and `--queued` more runs wait for a worker
  (`--busy-drops`). p50, p99, max in milliseconds.
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


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (a forkserver's and its workers') counted once in all."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


GATED = """
name: bench_gated
version: 1
initial: hold
states:
  hold: {action: bench_gate_actions:hold}
  done: {final: true}
transitions:
  - {trigger: ok, source: hold, dest: done}
"""
GATE_ACTIONS = """import time
from pathlib import Path


def hold(ctx):
    while not Path(ctx.input["gate"]).exists():  # the bench releases every step at once
        time.sleep(0.01)
"""


def drops(home: Home, run_ids: list[str], first: int) -> list[float]:
    """Approve each run in turn (the next after the previous record): latencies in ms."""
    samples = []
    for n, run_id in enumerate(run_ids):
        path = home.store.path(run_id)
        size = path.stat().st_size
        t0 = drop(home, run_id, first + n)
        try:
            samples.append((next_record_ts(path, size) - t0) * 1000)
        except TimeoutError:  # starved (a supervisor without a mail lane): one such drop says it all
            samples.append(float("inf"))
            break
    return samples


def percentiles(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {"drops": len(samples), "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
            "max_ms": round(samples[-1], 2), "not_journaled_within_30s": sum(x == float("inf") for x in samples)}


def processes(root: int) -> dict[str, dict[str, float]]:
    """RSS and PSS (MB) of the supervisor and each process under it, named by role."""
    out = {}
    for pid in tree(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            rss, pss = rss_mb(pid), pss_mb(pid)
        except (OSError, IndexError):
            continue
        # Workers and their fork server are forks of the supervisor (its command line): tell them by
        # parent. (Where multiprocessing's forkserver stands in, a fresh interpreter, its command says so.)
        role = ("supervisor" if pid == root else "resource_tracker" if "resource_tracker" in cmd
                else "forkserver" if ppid == root else "worker")
        out[f"{role} {pid}"] = {"rss": round(rss, 1), "pss": round(pss, 1)}
    return out


def tree_cpu(root: int) -> float:
    total = 0.0
    for pid in tree(root):
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def at_size(work: Path, count: int, args: argparse.Namespace) -> dict:
    """One supervisor over `count` waiting runs: start-up, RSS, idle CPU, approval latency
    idle and while every worker holds a long step and more runs are queued."""
    home = Home(work / f"home-{count}").ensure()
    setup = create_waiting(home, work / "bench_approval.yaml", count)
    runner = Runner(home, machines_dir=work)
    latency_runs = [f"lat-{i:04d}" for i in range(args.drops + args.busy_drops)]
    for run_id in latency_runs:
        runner.launch(work / "bench_approval.yaml", {}, run_id=run_id)  # waiting, before the supervisor starts
    proc = supervise(home.root, work, args.workers)
    gate = work / f"gate-{count}"
    try:
        startup = wait_started(proc)
        time.sleep(1.0)  # let the workers and forkserver settle
        sup0, all0, t0 = cpu_seconds(proc.pid), tree_cpu(proc.pid), time.monotonic()
        time.sleep(args.idle)
        sup1, all1, t1 = cpu_seconds(proc.pid), tree_cpu(proc.pid), time.monotonic()
        rss = processes(proc.pid)
        idle_latency = percentiles(drops(home, latency_runs[:args.drops], 0))
        gated = [runner.start(work / "bench_gated.yaml", {"gate": str(gate)}, run_id=f"busy-{i:03d}")
                 for i in range(args.workers + args.queued)]
        busy_at = time.monotonic()
        while sum(_in_flight(home, run_id) for run_id in gated) < args.workers:
            if time.monotonic() - busy_at > 60:
                raise TimeoutError("the gated steps did not start within 60 s")
            time.sleep(0.01)
        busy_latency = percentiles(drops(home, latency_runs[args.drops:], args.drops))
        still_busy = sum(_in_flight(home, run_id) for run_id in gated)
    finally:
        gate.touch()
        proc.terminate()
        proc.wait(60)
    return {
        "waiting_runs": count,
        "setup_s": round(setup, 2),
        "startup_s": round(startup, 2),
        "memory_mb": rss,
        "rss_total_mb": round(sum(m["rss"] for m in rss.values()), 1),
        "pss_total_mb": round(sum(m["pss"] for m in rss.values()), 1),
        "idle_seconds": round(t1 - t0, 1),
        "idle_cpu_percent_supervisor": round(100 * (sup1 - sup0) / (t1 - t0), 2),
        "idle_cpu_percent_all": round(100 * (all1 - all0) / (t1 - t0), 2),
        "approval_latency_idle": idle_latency,
        "approval_latency_busy": {**busy_latency, "workers_busy": args.workers, "queued_runs": args.queued,
                                  "steps_in_flight_at_end": still_busy},
    }


def _in_flight(home: Home, run_id: str) -> bool:
    try:
        return b'"step_started"' in home.store.path(run_id).read_bytes()
    except FileNotFoundError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="waiting runs per supervisor (default 1000,10000)")
    parser.add_argument("--with-50k", action="store_true", help="also 50,000 waiting runs (minutes to build)")
    parser.add_argument("--drops", type=int, default=100, help="approvals timed while idle (default 100)")
    parser.add_argument("--busy-drops", type=int, default=50, help="approvals timed while busy (default 50)")
    parser.add_argument("--queued", type=int, default=4, help="gated runs queued behind the busy workers")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement (default 60)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n] + ([50_000] if args.with_50k else [])
    with tempfile.TemporaryDirectory(prefix="ratchet-supbench-", dir=ROOT) as tmp:
        work = Path(tmp)
        (work / "bench_approval.yaml").write_text(MACHINE)
        (work / "bench_gated.yaml").write_text(GATED)
        (work / "bench_gate_actions.py").write_text(GATE_ACTIONS)
        report = {
            "command": " ".join(["python", "bench/supervisor_bench.py", *sys.argv[1:]]),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "workers": args.workers,
            "sizes": [at_size(work, n, args) for n in sizes],
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews every figure
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
