"""Journal benchmark: durable appends vs the disk's raw rate, appends without fsync, replay.

Prints one JSON document. The fsync'd append rate is compared with a raw loop of
`os.write` + the same sync call the writer uses, on the same disk, with the same
line sizes, in the same run; the rounds alternate so that disk noise hits both alike.

    python bench/journal_bench.py                      # defaults run in well under a minute
    python bench/journal_bench.py --records 1000000 --fsync-records 5000 --dir /data
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
sys.path.insert(0, str(ROOT))  # run from a clone without installing

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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000,
                        help="records for the no-fsync append and replay (default 200000)")
    parser.add_argument("--fsync-records", type=int, default=2_000, help="records per fsync'd round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw/writer fsync rounds (default 3)")
    parser.add_argument("--dir", type=Path, default=Path("."), help="a folder on the disk to measure (default .)")
    args = parser.parse_args(argv)

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
        replay = best_rate(lambda: read(big), args.records)
        verified = verify_rate(big, args.records)
        size = big.stat().st_size
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    ratio = durable_s / raw_rate_s
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv] if argv is None else ["journal_bench.py", *argv]),
        "disk_folder": str(args.dir.resolve()),
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
        "replay_records_per_s": round(replay),
        "verify_records_per_s": round(verified),
        "targets": {
            "replay >= 500000 records/s": replay >= 500_000,
            "fsync appends within 20% of raw (ratio >= 0.8)": ratio >= 0.8,
        },
    }
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
