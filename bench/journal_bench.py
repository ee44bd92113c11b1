"""Journal benchmark: durable appends vs the disk's raw rate, appends without fsync, replay.

Prints one JSON document. The fsync'd append rate is compared with a raw loop of
`os.write` + the same sync call the writer uses, on the same disk, with the same
line sizes, in the same run; the rounds alternate so that disk noise hits both alike.

Replay (`replay_10000_journals`) is measured as the engine does it, on `--journals`
journals of 21 records (a 6-step run of a real machine, written by the Runner, then
copied under new run ids and chained again): each journal is read from disk, decoded
and validated record by record, its seq checked and its head hashed as every read does
(the cursor the next read chains to), and folded into a `RunState`. Two ways, each in
a fresh process per round (warm page cache), rounds interleaved:

- `startup_scan`: what `ratchet supervise` does at start, `RunTable.scan()`: list the
  journals (`store.changes`), read each and fold it record by record (`RunState.apply`);
- `runner_replay`: what the runner does before advancing a run, `fold(store.read(id))`,
  for every run id (the listing is not timed).

`--compare DIR` (a checkout of another version, e.g. `git worktree add DIR main`)
replays the same journals with that code too, in the same rounds, alternating.

    python bench/journal_bench.py                      # defaults run in well under a minute
    python bench/journal_bench.py --records 1000000 --fsync-records 5000 --dir /data
    python bench/journal_bench.py --compare /tmp/main --replay-rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The code measured: this clone, or another one's for a `--compare` round (a child process).
CODE = Path(os.environ.get("RATCHET_BENCH_CODE") or ROOT)
sys.path.insert(0, str(CODE))  # run from a clone without installing

from journal import (  # noqa: E402
    FileStore,
    JournalWriter,
    RetryScheduled,
    RunStarted,
    StepFailed,
    StepStarted,
    StepSucceeded,
    Transition,
    TriggerReceived,
    Waiting,
    hash_definition,
    read,
    verify,
)

SYNC_CALL = "fdatasync"  # what JournalWriter.append calls; the raw loop must use the same
STATES = ["intake", "draft", "enrich", "review", "send", "archive"]


def run_started(run_id: str) -> RunStarted:
    states = {s: {"action": f"renewal_actions:{s}", "retry": {"attempts": 5, "backoff": 2.0}} for s in STATES}
    definition = {"name": "renewal_review", "version": 1, "initial": STATES[0], "states": states}
    return RunStarted(
        run_id=run_id, machine="renewal_review", version=1, definition=definition,
        definition_hash=hash_definition(definition), input={"customer": "acme", "plan": "pro"},
    )


def records(count: int, run_id: str = "bench") -> list:
    """A realistic mix: started / succeeded / transition, with a failure+retry and a wait now and then."""
    out: list = [run_started(run_id)]
    i = 0
    while len(out) < count:
        state, dest = STATES[i % len(STATES)], STATES[(i + 1) % len(STATES)]
        key = f"{run_id}/{state}/{i // len(STATES) + 1}"
        out.append(StepStarted(state=state, attempt=1, idempotency_key=key))
        if i % 7 == 3:
            out.append(StepFailed(state=state, attempt=1, error="503 Service Unavailable",
                                  error_type="BillingUnavailable", duration_ms=118.4))
            out.append(RetryScheduled(state=state, attempt=2, due="2026-11-27T09:41:05.000000Z", delay_s=2.0))
            out.append(StepStarted(state=state, attempt=2, idempotency_key=key))
        out.append(StepSucceeded(state=state, attempt=1, trigger="ok", data={"summary_id": f"s-{i}", "tokens": 812},
                                 duration_ms=42.7))
        out.append(Transition(trigger="ok", source=state, dest=dest))
        if i % 11 == 5:
            out.append(Waiting(state=dest, triggers=["approve", "reject"], approvers=["alice", "bob"],
                               deadline="2026-11-29T09:41:03.000000Z"))
            out.append(TriggerReceived(trigger="approve", state=dest, by="alice", source_file="approve-0042.json",
                                       comment="looks good"))
        i += 1
    return out[:count]


def encoded_lines(recs: list) -> list[bytes]:
    """The lines the writer would produce (so the raw loop writes the same sizes)."""
    path = Path(tempfile.mkdtemp()) / "x.jsonl"
    with JournalWriter(path, "x", create=True, durability="none") as w:
        w.append_many(recs)
    lines = path.read_bytes().splitlines(keepends=True)
    shutil.rmtree(path.parent)
    return lines


def raw_rate(folder: Path, lines: list[bytes]) -> float:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    fd = os.open(FileStore(folder).runs_dir / "raw.jsonl", flags, 0o644)
    sync = getattr(os, SYNC_CALL)
    start = time.perf_counter()
    for line in lines:
        os.write(fd, line)
        sync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    return len(lines) / elapsed


def writer_rate(folder: Path, recs: list, durability: str, name: str) -> float:
    store = FileStore(folder, durability=durability)
    path = store.path(name)
    if path.exists():
        path.unlink()
    with store.writer(name, create=True) as w:
        start = time.perf_counter()
        for record in recs:
            w.append(record)
        elapsed = time.perf_counter() - start
    return len(recs) / elapsed


def verify_rate(path: Path, count: int) -> float:
    """Records/s of a full `verify`, which must pass: a failure stops at its line and would
    time nothing (an earlier version of this bench timed a verify that failed at line 1)."""
    start = time.perf_counter()
    result = verify(path)
    elapsed = time.perf_counter() - start
    if not result.ok or result.records != count:
        raise SystemExit(f"{path}: verify failed ({result}); the verify figure would be meaningless")
    return count / elapsed


def best_rate(fn, count: int, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = max(best, count / (time.perf_counter() - start))
    return best


CHAIN = "name: chain6\nversion: 1\ninitial: s1\nstates:\n" + "".join(
    f"  s{i}: {{action: 'journal_bench_actions:step'}}\n" for i in range(1, 7)) + (
    "  done: {final: true}\ntransitions:\n") + "".join(
    f"  - {{trigger: ok, source: s{i}, dest: {'done' if i == 6 else f's{i + 1}'}}}\n" for i in range(1, 7))


def write_journals(home_dir: Path, count: int) -> int:
    """`count` journals of one real 6-step run (run_started ... run_finished, sealed); its length."""
    import msgspec

    from engine.home import Home
    from engine.run.clock import FakeClock
    from engine.run.runner import Runner

    machines = home_dir.parent / "machines"
    machines.mkdir()
    (machines / "journal_bench_actions.py").write_text("def step(ctx):\n    return {'tokens': 812}\n")
    (machines / "chain6.yaml").write_text(CHAIN)
    template_home = Home(home_dir.parent / "template").ensure()
    if Runner(template_home, clock=FakeClock()).launch(machines / "chain6.yaml", {"customer": "acme"},
                                                       run_id="template").status != "finished":
        raise SystemExit("the template run did not finish: the replay figure would be meaningless")
    template = template_home.store.read("template").records
    store = Home(home_dir).ensure().store
    store.durability = "none"  # writing the journals is not what is measured
    for i in range(count):
        run_id = f"run{i:06d}"
        copies = [msgspec.structs.replace(r, seq=0, prev="") for r in template]
        copies[0] = msgspec.structs.replace(copies[0], run_id=run_id)
        with store.writer(run_id, create=True) as writer:
            writer.append_many(copies)
    return len(template)


def replay_child(home_dir: Path, mode: str) -> dict:
    """One replay of every journal under `home_dir` in this process; checks what it folded."""
    import engine
    from engine.home import Home
    from engine.run.replay import fold
    from engine.supervise.runs import RunTable

    home = Home(home_dir)
    if mode == "startup_scan":
        table = RunTable(home)
        start, cpu = time.perf_counter(), time.process_time()
        table.scan()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        states = [table[run_id].state for run_id in table.ids()]
        unfinished = sum(s.status != "finished" or s.state != "done" for s in states)
        runs, records = len(states), sum(s.last_seq for s in states)
    else:  # one run at a time, as the runner does: each state checked, then dropped
        store = home.store
        ids = store.run_ids()
        runs = records = unfinished = 0
        start, cpu = time.perf_counter(), time.process_time()
        for run_id in ids:
            state = fold(store.read(run_id).records)
            unfinished += state.status != "finished" or state.state != "done"
            runs, records = runs + 1, records + state.last_seq
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if unfinished:
        raise SystemExit(f"replay folded {unfinished} runs that did not end in 'done'")
    return {"runs": runs, "records": records, "seconds": elapsed, "cpu_seconds": cpu,
            "code": str(Path(engine.__file__).resolve().parent.parent)}


def replay_rounds(folder: Path, journals: int, rounds: int, compare: Path | None) -> dict:
    """Median and min-max records/s of each way of replaying, per code version, interleaved."""
    import subprocess

    home_dir = folder / "replay"
    per_journal = write_journals(home_dir, journals)
    versions = {"this": ROOT, **({"compare": compare.resolve()} if compare else {})}
    rates: dict[str, dict[str, list[float]]] = {v: {"startup_scan": [], "runner_replay": []} for v in versions}
    cpu_rates: dict[str, dict[str, list[float]]] = {v: {"startup_scan": [], "runner_replay": []} for v in versions}
    for _ in range(rounds):
        for mode in ("startup_scan", "runner_replay"):
            for version, code in versions.items():
                env = {**os.environ, "RATCHET_BENCH_CODE": str(code)}
                out = subprocess.run([sys.executable, __file__, "--replay-child", str(home_dir), "--mode", mode],
                                     env=env, check=True, capture_output=True, text=True).stdout
                got = json.loads(out)
                if got["code"] != str(code):
                    raise SystemExit(f"{version}: the replay ran {got['code']}'s code, not {code}'s")
                if got["records"] != journals * per_journal:
                    raise SystemExit(f"{version} {mode}: folded {got['records']} records, not "
                                     f"{journals * per_journal}")
                rates[version][mode].append(got["records"] / got["seconds"])
                cpu_rates[version][mode].append(got["records"] / got["cpu_seconds"])
    report: dict = {"journals": journals, "records_per_journal": per_journal, "records": journals * per_journal,
                    "rounds": rounds, "page_cache": "warm", "process": "a fresh one per round and way"}
    for version, code in versions.items():
        report[version] = {"code": str(code), **{mode: _spread(values, cpu_rates[version][mode], journals * per_journal)
                                                  for mode, values in rates[version].items()}}
    return report


def _spread(rates: list[float], cpu_rates: list[float], records: int) -> dict:
    """Wall-clock records/s (the figure), and per CPU second of the process (steadier on a
    shared machine: other processes' load slows the wall clock more than the CPU time)."""
    median = statistics.median(rates)
    return {"records_per_s_median": round(median), "min": round(min(rates)), "max": round(max(rates)),
            "seconds_median": round(records / median, 3), "target_1M_records_per_s": median >= 1_000_000,
            "records_per_cpu_s_median": round(statistics.median(cpu_rates)),
            "cpu_min": round(min(cpu_rates)), "cpu_max": round(max(cpu_rates))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000,
                        help="records for the no-fsync append and the read of one journal (default 200000)")
    parser.add_argument("--fsync-records", type=int, default=2_000, help="records per fsync'd round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw/writer fsync rounds (default 3)")
    parser.add_argument("--dir", type=Path, default=Path("."), help="a folder on the disk to measure (default .)")
    parser.add_argument("--journals", type=int, default=10_000,
                        help="journals of 21 records for the replay measure (default 10000; 0: skip it)")
    parser.add_argument("--replay-rounds", type=int, default=5, help="replay rounds (default 5)")
    parser.add_argument("--compare", type=Path, default=None,
                        help="a checkout of another version: replay the same journals with its code too")
    parser.add_argument("--replay-child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="startup_scan", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay_child is not None:  # one replay round, in its own process (replay_rounds)
        return replay_child(args.replay_child, args.mode)

    load_at_start = round(os.getloadavg()[0], 2)
    folder = Path(tempfile.mkdtemp(prefix="ratchet-bench-", dir=args.dir))
    FileStore(folder).runs_dir.mkdir()  # the raw loop writes beside the journals: same folder
    try:
        sample = records(args.fsync_records)
        lines = encoded_lines(sample)
        raw, durable = [], []
        for n in range(args.rounds):
            raw.append(raw_rate(folder, lines))
            durable.append(writer_rate(folder, records(args.fsync_records), "fsync", f"sync{n}"))
        raw_rate_s, durable_s = statistics.median(raw), statistics.median(durable)

        nofsync = writer_rate(folder, records(args.records), "none", "big")
        big = FileStore(folder).path("big")
        read_rate = best_rate(lambda: read(big), args.records)
        verified = verify_rate(big, args.records)
        size = big.stat().st_size
        replay = replay_rounds(folder, args.journals, args.replay_rounds, args.compare) if args.journals else {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    ratio = durable_s / raw_rate_s
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv] if argv is None else ["journal_bench.py", *argv]),
        "disk_folder": str(args.dir.resolve()),
        "load_avg_1m_at_start": load_at_start,
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews every rate
        "cpus": os.cpu_count(),
        "sync_call": f"os.{SYNC_CALL} (writer and raw loop alike)",
        "record_bytes_mean": round(sum(map(len, lines)) / len(lines), 1),
        "fsync_records_per_round": args.fsync_records,
        "rounds": args.rounds,
        "raw_write_sync_per_s": round(raw_rate_s),
        "append_fsync_per_s": round(durable_s),
        "append_fsync_vs_raw_ratio": round(ratio, 3),
        "append_nofsync_per_s": round(nofsync),
        "records": args.records,
        "journal_bytes": size,
        # Read and decode only (no fold) of one long journal; the real replay is below.
        "read_one_journal_records_per_s": round(read_rate),
        "verify_records_per_s": round(verified),
        "replay_10000_journals" if args.journals == 10_000 else f"replay_{args.journals}_journals": replay,
        "targets": {
            "read of one journal >= 500000 records/s": read_rate >= 500_000,
            "fsync appends within 20% of raw (ratio >= 0.8)": ratio >= 0.8,
        },
    }
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
