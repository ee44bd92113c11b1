"""Runner benchmark: durable steps/s against the disk's bound and two peers, and replay time.

1. Durable steps/s: N runs x K task steps, one after another in one process, every
   record fsync'd as in production. A run costs K+1 fdatasyncs ([run_started +
   step_started], then each outcome with the next step_started or run_finished) plus one
   fsync of `runs/` for the new journal file: the syncs are counted, every thread's, not
   assumed. The actions do nothing, so this
   measures the engine and the disk.
2. The disk's bounds, measured in the same `runs/` folder as the engine's journals and
   interleaved with them round by round (file creation on this disk costs what was
   deleted nearby lately, so a floor measured elsewhere or at another time is no floor):
   the raw append+fdatasync rate divided by Ratchet's syncs per step, and the raw I/O
   of a run with no engine (new file, folder fsync, K+1 appends with fdatasync).
   Also "one process, T lanes" (engine.run.concurrent: T threads, each with its own
   Runner, one store), for each T of `--lanes` (default 2, 4, 8), in the same rounds and
   folder as the sequential line (the order rotating round by round), syncs counted the
   same way, each against the same round's bound; the best T is reported too.
3. The same workload over 2 worker processes, as `ratchet supervise` runs it by default.
4. Peers, the same N x K workload in fresh interpreters (bench/peers.py): DBOS on its
   embedded SQLite (its default rollback journal, and WAL at synchronous=FULL) and
   LangGraph with SqliteSaver at durability="sync" (`pip install -e '.[bench]'`; skipped
   with a note when not installed, or with --no-peers), each sequential and with the same
   T workflows at once (`peers.py --concurrency T`), one round of each after each of
   Ratchet's rounds. Each engine's best configuration is compared with Ratchet's best,
   and sequential with sequential, round by round (the median of the per-round ratios).
5. Replay: read + decode + fold 10,000 journals of 20 records (warm page cache), target < 1 s.

Every rate is the median of `--rounds` rounds, with its min-max; a ratio is the median
of the per-round ratios (each from the same round's measurements).

    python bench/runner_bench.py                       # 3 rounds of 2000 x 5, peers, 10,000 x 20
    python bench/runner_bench.py --runs 200 --no-peers --journals 1000
    python bench/runner_bench.py --compare /tmp/main      # and main's engine, round by round

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing

from engine.home import Home  # noqa: E402
from engine.run.clock import FakeClock  # noqa: E402
from engine.run.concurrent import Driver, Launch  # noqa: E402
from engine.run.replay import fold  # noqa: E402
from engine.run.runner import Runner  # noqa: E402
from journal import FileStore, RunStarted  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from peers import PEERS, fsync_rate, measure_peer  # noqa: E402

ACTIONS = "def step(ctx):\n    return None\n"


def write_machine(folder: Path, steps: int) -> Path:
    """A chain of `steps` task states, then a final state."""
    names = [f"s{i}" for i in range(1, steps + 1)]
    states = "".join(f"  {n}: {{action: 'runner_bench_actions:step'}}\n" for n in names)
    moves = "".join(f"  - {{trigger: ok, source: {a}, dest: {b}}}\n"
                    for a, b in zip(names, names[1:] + ["done"], strict=True))
    (folder / "runner_bench_actions.py").write_text(ACTIONS)  # one module file for every chain
    path = folder / f"chain{steps}.yaml"
    path.write_text(f"name: chain{steps}\nversion: 1\ninitial: s1\nstates:\n{states}"
                    f"  done: {{final: true}}\ntransitions:\n{moves}")
    return path


class SyncCounter:
    """Counts the process's real fsync and fdatasync calls (every thread's) while it is
    entered, and still makes them."""

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> SyncCounter:
        self._real = os.fsync, os.fdatasync

        def counted(real):
            def sync(fd):
                self.calls += 1
                return real(fd)
            return sync

        os.fsync, os.fdatasync = (counted(f) for f in self._real)
        return self

    def __exit__(self, *exc) -> None:
        os.fsync, os.fdatasync = self._real


def durable_steps(folder: Path, runs: int, steps: int, first: int = 0) -> dict:
    machine = write_machine(folder, steps)
    runner = Runner(Home(folder / "steps").ensure(), clock=FakeClock())
    with SyncCounter() as syncs:
        began, cpu = time.perf_counter(), time.process_time()
        for i in range(first, first + runs):
            rs = runner.launch(machine, {"i": i}, run_id=f"run{i:06d}")
            if rs.status != "finished":
                raise RuntimeError(f"run {rs.run_id} did not finish")
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"runs": runs, "steps_per_run": steps, "seconds": round(elapsed, 3),
            "durable_steps_per_s": round(runs * steps / elapsed, 1),
            "runs_per_s": round(runs / elapsed, 1),
            "cpu_ms_per_step": round(cpu * 1000 / (runs * steps), 3),  # the process's, kernel time too
            # counted, not assumed: K+1 fdatasyncs and the folder fsync of each new journal
            "syncs_per_run": round(syncs.calls / runs, 3), "syncs_per_step": round(syncs.calls / (runs * steps), 3),
            "ms_per_step": round(elapsed * 1000 / (runs * steps), 3)}


def durable_steps_lanes(folder: Path, runs: int, steps: int, threads: int, first: int = 0) -> dict:
    """`durable_steps` driven by one process over `threads` lanes (engine.run.concurrent), in
    the same home and runs/ folder; warmed by one run per lane first (threads, machine, key)."""
    machine = write_machine(folder, steps)
    driver = Driver(Home(folder / "steps").ensure(), threads=threads, clock=FakeClock())
    driver.drive([Launch(machine, {"i": i}, run_id=f"warm{threads}-{first + i:06d}") for i in range(threads)])
    jobs = [Launch(machine, {"i": i}, run_id=f"lane{threads}-{i:06d}") for i in range(first, first + runs)]
    with SyncCounter() as syncs:
        began, cpu = time.perf_counter(), time.process_time()
        outcomes = driver.drive(jobs)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    for outcome in outcomes:
        if isinstance(outcome, BaseException) or outcome.status != "finished":
            raise RuntimeError(f"{threads} lanes: a run did not finish: {outcome!r}")
    return {"threads": threads, "runs": runs, "steps_per_run": steps, "seconds": round(elapsed, 3),
            "durable_steps_per_s": round(runs * steps / elapsed, 1),
            "syncs_per_run": round(syncs.calls / runs, 3), "syncs_per_step": round(syncs.calls / (runs * steps), 3),
            "ms_per_step": round(elapsed * 1000 / (runs * steps), 3),
            "cpu_ms_per_step": round(cpu * 1000 / (runs * steps), 3)}  # the process's, every thread's, kernel too


STEPS_IN = """
import json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1] + "/bench", sys.argv[1]]
import runner_bench
folder, runs, steps, first = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
runner_bench.durable_steps(folder, 20, steps, first=10**7 + first)  # warm: imports, the key, the machine
print(json.dumps(runner_bench.durable_steps(folder, runs, steps, first=first)))
"""


def durable_steps_of(tree: Path, folder: Path, runs: int, steps: int, first: int) -> dict:
    """`durable_steps` as the code at `tree` (this clone, or an earlier one: --compare) runs
    it, in a fresh interpreter warmed by 20 runs, in the same home and runs/ folder."""
    out = subprocess.run([sys.executable, "-c", STEPS_IN, str(tree), str(folder), str(runs), str(steps),
                          str(first)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _drive_runs(args: tuple) -> None:
    """One worker process of `durable_steps_in_workers`: launch runs lo..hi-1 to the end."""
    folder, machine, lo, hi = args
    runner = Runner(Home(folder), clock=FakeClock())
    for i in range(lo, hi):
        if runner.launch(machine, {"i": i}, run_id=f"run{i:06d}").status != "finished":
            raise RuntimeError(f"run{i:06d} did not finish")


def durable_steps_in_workers(folder: Path, runs: int, steps: int, workers: int) -> dict:
    """The same workload split over `workers` processes, as the supervisor's pool runs it:
    one run's engine work overlaps another's fsync wait (and ext4 may merge fsyncs)."""
    machine = write_machine(folder, steps)
    home = Home(folder / f"workers{workers}").ensure()
    chunks = [(home.root, machine, k * runs // workers, (k + 1) * runs // workers) for k in range(workers)]
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
        warm_up = [(home.root, machine, runs + k, runs + k + 1) for k in range(workers)]
        pool.map(_drive_runs, warm_up, chunksize=1)  # imports and the machine, before timing
        began = time.perf_counter()
        pool.map(_drive_runs, chunks, chunksize=1)
        elapsed = time.perf_counter() - began
    return {"workers": workers, "runs": runs, "steps_per_run": steps, "seconds": round(elapsed, 3),
            "durable_steps_per_s": round(runs * steps / elapsed, 1)}


def spread(values: list[float]) -> dict:
    """Median and min-max of one figure over the rounds."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def interleaved_rounds(folder: Path, runs: int, steps: int, rounds: int, compare: Path | None = None,
                       lanes: tuple[int, ...] = (), between: Callable[[int], None] | None = None) -> dict:
    """Each round: the engine's N x K runs, one after another and over each number of `lanes`
    (their order rotating round by round), then the disk's two bounds in the very folder its
    journals are in (runs/), so the engine and its floors share the disk's state, then
    `between(round)` (the peers' round). With `compare`, both trees run in fresh
    interpreters each round, in turn first."""
    runs_dir = Home(folder / "steps").ensure().store.root / "runs"
    ours, before, probes, floors = [], [], [], []
    laned: dict[int, list[dict]] = {t: [] for t in lanes}
    for r in range(rounds):
        order = [0, *lanes]
        order = order[r % len(order):] + order[:r % len(order)]
        for threads in order:
            if threads:
                laned[threads].append(durable_steps_lanes(folder, runs, steps, threads, first=r * runs))
            elif compare is None:
                ours.append(durable_steps(folder, runs, steps, first=r * runs))
        if compare is not None:  # which goes first alternates: the first after the floors meets their writeback
            for tree in ((ROOT, compare) if r % 2 == 0 else (compare, ROOT)):
                timed = durable_steps_of(tree, folder, runs, steps, first=(2 * r + (tree != ROOT)) * runs)
                (ours if tree == ROOT else before).append(timed)
        probes.append(fsync_rate(runs_dir / f"probe{r}")["fsyncs_per_s"])
        floors.append(raw_run_pattern(runs_dir, steps, runs, prefix=f"raw{r}-"))
        if between is not None:
            between(r)
    rates = [o["durable_steps_per_s"] for o in ours]
    per_step = statistics.median(o["syncs_per_step"] for o in ours)
    bounds = [p / o["syncs_per_step"] for p, o in zip(probes, ours, strict=True)]
    compared = {}
    if compare is not None:
        rates_before = [b["durable_steps_per_s"] for b in before]
        compared = {"compared_with": {
            "tree": str(compare), "how": "each round both trees, in turn first, fresh interpreters, same runs/ folder",
            "durable_steps_per_s": spread(rates_before),
            "syncs_per_step": statistics.median(b["syncs_per_step"] for b in before),
            "vs_bound": spread([b["durable_steps_per_s"] / (p / b["syncs_per_step"])
                                for b, p in zip(before, probes, strict=True)]),
            "this_tree_vs_that": spread([o / b for o, b in zip(rates, rates_before, strict=True)])}}
    concurrent = {}
    for threads, measured in laned.items():
        lane_rates = [m["durable_steps_per_s"] for m in measured]
        concurrent[f"{threads}_lanes"] = {
            "threads": threads, "durable_steps_per_s": spread(lane_rates),
            "syncs_per_step": statistics.median(m["syncs_per_step"] for m in measured),
            "cpu_ms_per_step": spread([m["cpu_ms_per_step"] for m in measured]),
            "vs_bound": spread([m["durable_steps_per_s"] / (p / m["syncs_per_step"])
                                for m, p in zip(measured, probes, strict=True)]),
            "vs_sequential": spread([t / o for t, o in zip(lane_rates, rates, strict=True)])}
    if concurrent:
        best = max(concurrent.values(), key=lambda c: c["durable_steps_per_s"]["median"])
        concurrent["best"] = {"threads": best["threads"], "durable_steps_per_s": best["durable_steps_per_s"],
                              "vs_bound": best["vs_bound"], "target": "vs_bound >= 0.75",
                              "met": best["vs_bound"]["median"] >= 0.75}
    # Ratchet's best configuration in each round (sequential or some number of lanes): what
    # the peers' best is compared with, round by round.
    best_by_round = [max([o["durable_steps_per_s"], *(laned[t][r]["durable_steps_per_s"] for t in lanes)])
                     for r, o in enumerate(ours)]
    return {
        "_rates_by_round": {"sequential": rates, "best": best_by_round},
        **compared,
        "one_process_lanes": concurrent,
        "durable_steps": {"runs_per_round": runs, "steps_per_run": steps, "rounds": rounds,
                          "durable_steps_per_s": spread(rates),
                          "ms_per_step": spread([o["ms_per_step"] for o in ours]),
                          "cpu_ms_per_step": spread([o.get("cpu_ms_per_step", 0.0) for o in ours]),
                          "syncs_per_run": spread([o["syncs_per_run"] for o in ours]), "syncs_per_step": per_step},
        "disk_bound": {
            "folder": "the journals' own runs/ folder, interleaved round by round",
            "disk_fsyncs_per_s": spread(probes), "bound_steps_per_s": spread(bounds),
            "ratchet_vs_bound": spread([o / b for o, b in zip(rates, bounds, strict=True)]),
            "target": "ratchet_vs_bound >= 0.75",
            "raw_run_io_steps_per_s": spread(floors),
            "ratchet_vs_raw_run_io": spread([o / f for o, f in zip(rates, floors, strict=True)]),
        },
    }


def raw_run_pattern(folder: Path, steps: int, runs: int = 500, prefix: str = "raw-") -> float:
    """Steps/s of the bare I/O of `runs` runs (no engine): the floor Ratchet can approach."""
    folder.mkdir(parents=True, exist_ok=True)
    line = b"x" * 220 + b"\n"  # a typical record's size
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    began = time.perf_counter()
    for i in range(runs):
        fd = os.open(folder / f"{prefix}{i}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        os.fsync(dir_fd)
        for _ in range(steps + 1):
            os.write(fd, line)
            os.fdatasync(fd)
        os.close(fd)
    elapsed = time.perf_counter() - began
    os.close(dir_fd)
    return round(runs * steps / elapsed, 1)


def peer_round(results: dict[tuple[str, int], list[dict]], runs: int, steps: int, lanes: tuple[int, ...]) -> None:
    """One round of every peer, sequential and at each concurrency of `lanes`, into `results`."""
    for name in PEERS:
        for c in (1, *lanes):
            results.setdefault((name, c), []).append(measure_peer(name, runs, steps, concurrency=c))


def peers(results: dict[tuple[str, int], list[dict]], ours: list[float], ours_best: list[float],
          lanes: tuple[int, ...] = ()) -> dict:
    """Each peer's steps/s over the rounds (`peer_round`, run between Ratchet's), sequential
    and at each concurrency of `lanes`, and Ratchet's ratios, each the median of the
    per-round ratios: sequential to sequential (`ours`, by round), and Ratchet's best
    configuration to the peer's best (`ours_best`, by round). DBOS's target is against its
    best configuration of all."""
    rounds = len(ours)
    runs, steps = next(iter(results.values()))[0].get("runs"), next(iter(results.values()))[0].get("steps_per_run")
    out: dict = {}
    for name in PEERS:
        entry: dict = {"runs": runs, "steps_per_run": steps, "rounds": rounds}
        medians = {}
        for c in (1, *lanes):
            got = results[(name, c)]
            failed = next((r for r in got if "error" in r), None)
            if failed is not None:
                entry[f"concurrency_{c}"] = {"error": failed["error"]}
                continue
            rates = [r["steps_per_s"] for r in got]
            entry[f"concurrency_{c}"] = {"steps_per_s": spread(rates), "verified": all(r["verified"] for r in got)}
            medians[c] = statistics.median(rates)
            last = got[-1]
            entry.update({k: last[k] for k in ("version", "sqlite_journal_mode", "sqlite_synchronous",
                                               "durable_commits", "durability_note") if k in last})
        if not medians:
            out[name] = {"error": entry[next(iter(k for k in entry if k.startswith("concurrency_")))]["error"]}
            continue
        best = max(medians, key=lambda c: medians[c])
        entry["steps_per_s"] = entry[f"concurrency_{best}"]["steps_per_s"]  # its best configuration
        entry["best_concurrency"] = best
        peer_best = [max(results[(name, c)][r]["steps_per_s"] for c in medians) for r in range(rounds)]
        entry["ratchet_ratio"] = spread([o / p for o, p in zip(ours_best, peer_best, strict=True)])  # best vs best
        if 1 in medians:  # one at a time on both sides
            entry["ratchet_ratio_sequential"] = spread([o / results[(name, 1)][r]["steps_per_s"]
                                                        for r, o in enumerate(ours)])
        out[name] = entry
    dbos = [n for n in ("dbos", "dbos-wal") if "steps_per_s" in out.get(n, {})]
    targets = {}
    if dbos:
        best_dbos = max(dbos, key=lambda n: out[n]["steps_per_s"]["median"])
        targets[f"ratchet >= 5x DBOS at its best ({best_dbos}, concurrency "
                f"{out[best_dbos]['best_concurrency']})"] = out[best_dbos]["ratchet_ratio"]["median"] >= 5.0
    if "steps_per_s" in out.get("langgraph", {}):
        targets['ratchet >= 3x LangGraph durability="sync" at its best'] = (
            out["langgraph"]["ratchet_ratio"]["median"] >= 3.0)
    out["targets"] = targets
    return out


def replay(folder: Path, journals: int) -> dict:
    """Write `journals` journals of 20 records (a 6-step run) without fsync, then fold all."""
    machine = write_machine(folder, 6)
    template_home = Home(folder / "template").ensure()
    Runner(template_home, clock=FakeClock()).advance(
        Runner(template_home, clock=FakeClock()).start(machine, {}, run_id="template"))
    template = template_home.store.read("template").records
    store = FileStore(folder / "replay", durability="none")
    for i in range(journals):
        rid = f"run{i:06d}"
        records = [RunStarted(**{**_fields(template[0]), "run_id": rid, "seq": 0, "prev": ""})]
        records += [type(r)(**{**_fields(r), "seq": 0, "prev": ""}) for r in template[1:]]
        with store.writer(rid, create=True) as writer:
            writer.append_many(records)
    ids = store.run_ids()
    began = time.perf_counter()
    total = 0
    for rid in ids:
        rs = fold(store.read(rid).records)
        total += rs.last_seq
    elapsed = time.perf_counter() - began
    return {"journals": len(ids), "records_per_journal": len(template), "records": total,
            "seconds": round(elapsed, 3), "records_per_s": round(total / elapsed),
            "target_s": 1.0, "within_target": elapsed < 1.0, "page_cache": "warm"}


def _fields(record) -> dict:
    return {f: getattr(record, f) for f in record.__struct_fields__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per round (default 2000)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement (default 3)")
    parser.add_argument("--peer-runs", type=int, default=None, help="runs per peer round (default --runs)")
    parser.add_argument("--journals", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--no-peers", action="store_true", help="skip DBOS and LangGraph")
    parser.add_argument("--lanes", default="2,4,8", metavar="T,T,...",
                        help="one process, T lanes (engine.run.concurrent), and the peers at T at once "
                             "(default 2,4,8; '' for none)")
    parser.add_argument("--compare", type=Path, default=None, metavar="DIR",
                        help="also time the engine of the clone at DIR (e.g. a `git archive` of main), interleaved")
    args = parser.parse_args()
    try:
        lanes = tuple(int(t) for t in args.lanes.split(",") if t.strip())
    except ValueError:
        parser.error(f"--lanes {args.lanes!r}: not a list of numbers; hint: --lanes 2,4,8")
    if any(t < 1 for t in lanes):
        parser.error(f"--lanes {args.lanes!r}: each number of lanes must be at least 1")
    folder = Path(tempfile.mkdtemp(prefix="ratchet-runner-bench-", dir=args.dir))
    try:
        peer_results: dict[tuple[str, int], list[dict]] = {}
        between = None if args.no_peers else (
            lambda r: peer_round(peer_results, args.peer_runs or args.runs, args.steps, lanes))
        measured = interleaved_rounds(folder, args.runs, args.steps, args.rounds, args.compare, lanes, between)
        by_round = measured.pop("_rates_by_round")
        bound = measured["disk_bound"]["bound_steps_per_s"]["median"]
        in_workers = durable_steps_in_workers(folder, args.runs, args.steps, 2)
        in_workers["vs_bound"] = round(in_workers["durable_steps_per_s"] / bound, 3)
        result = {
            "bench": "ratchet runner", "command": " ".join(["python", *sys.argv]),
            "python": sys.version.split()[0], "cpus": os.cpu_count(), "dir": str(folder),
            **measured,
            "durable_steps_2_workers": in_workers,
            "peers": {} if args.no_peers else peers(peer_results, by_round["sequential"], by_round["best"], lanes),
            "replay": replay(folder, args.journals),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews every rate
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
