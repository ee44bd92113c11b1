"""What proving a sender costs: per inbox file, and on the approval's latency end to end.

    python bench/trust_bench.py [--files 5000] [--drops 100] [--workers 2]

Prints one JSON document with two parts:

- per_file_us: the supervisor's own work to prove one file's sender
  (engine.trust.sender.prove, after the people file is loaded, plus the `stat` calls of
  PeopleBook.current that notice a changed people.yaml), in microseconds, median over
  `--files` calls: `signature` (canonical JSON + one Ed25519 verification) and
  `unix_user` (the owner's account looked up, links and mode checked); `open` is an open
  home for comparison.
- latency_ms: approval file renamed into the inbox -> the run's `trigger_received`
  (measured as bench/supervisor_bench.py does, on a real `ratchet supervise`), in three
  homes: open (no people.yaml), owner-proven (people.yaml maps this process's Unix user
  to alice) and signed (alice's key; each file signed for its run's wait).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from supervisor_bench import MACHINE, next_record_ts, supervise, wait_started  # noqa: E402

from engine.home import Home  # noqa: E402
from engine.run.runner import Runner  # noqa: E402
from engine.trust.envelope import sign  # noqa: E402
from engine.trust.people import PeopleBook  # noqa: E402
from engine.trust.sender import FileFacts, prove  # noqa: E402
from journal.keys import new_private_key, public_pem  # noqa: E402

USER = pwd.getpwuid(os.geteuid()).pw_name


def people_file(home: Path, mode: str, work: Path):
    """Write the home's people.yaml for `mode` ("open", "unix_user", "signature"); alice's key."""
    key_path = home / "alice.key"  # the sender's own copy (kept beside the home here)
    key = new_private_key(key_path)
    if mode == "open":
        return key
    (home / "keys").mkdir(exist_ok=True)
    (home / "keys" / "alice.pub").write_bytes(public_pem(key))
    entry = f"{{unix_user: {USER}}}" if mode == "unix_user" else "{public_key: keys/alice.pub}"
    (home / "people.yaml").write_text(f"alice: {entry}\n")
    return key


def per_file(work: Path, files: int) -> dict:
    out = {}
    facts = FileFacts(uid=os.geteuid(), nlink=1, mode=0o100644)
    for mode in ("open", "unix_user", "signature"):
        home = work / f"per-file-{mode}"
        home.mkdir()
        key = people_file(home, mode, work)
        book = PeopleBook(home)
        expires = datetime.now(UTC) + timedelta(hours=1)
        message = {"run": "r1", "trigger": "approve", "by": "alice", "comment": "ok for 40 seats",
                   "data": {"seats": 40}}
        if mode == "signature":
            message = sign(message, key, 5, expires)
        samples = []
        for _ in range(files):
            t0 = time.perf_counter()
            sender = prove(book.current(), message, facts)
            samples.append((time.perf_counter() - t0) * 1e6)
            if sender.problem is not None:
                raise RuntimeError(f"{mode}: {sender.problem}")
        out[mode] = round(statistics.median(samples), 1)
    return out


def latency(work: Path, mode: str, drops: int, workers: int) -> dict:
    home = Home(work / f"latency-{mode}").ensure()
    key = people_file(home.root, mode, work)
    runner = Runner(home, machines_dir=work)
    waits = {}
    for i in range(drops):
        run_id = runner.start(work / "bench_approval.yaml", {}, run_id=f"lat-{i:04d}")
        waits[run_id] = runner.advance(run_id).stands_at
    proc = supervise(home.root, work, workers)
    try:
        wait_started(proc)
        samples = []
        for n, (run_id, answers) in enumerate(waits.items()):
            message = {"run": run_id, "trigger": "approve", "by": "alice"}
            if mode == "signature":
                message = sign(message, key, answers, datetime.now(UTC) + timedelta(hours=1))
            path = home.store.path(run_id)
            size = path.stat().st_size
            t0 = drop(home, n, message)
            samples.append((next_record_ts(path, size) - t0) * 1000)
            if b'"trigger_received"' not in path.read_bytes()[size:]:
                raise RuntimeError(f"{mode}: the approval of {run_id} was refused: {path.read_bytes()[size:]!r}")
    finally:
        proc.terminate()
        proc.wait(30)
    samples.sort()
    return {"drops": drops, "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
            "max_ms": round(samples[-1], 2)}


def drop(home: Home, n: int, message: dict) -> float:
    """As supervisor_bench's drop, with any message: write in .tmp, fsync, rename in at t0."""
    name = f"bench-{n:05d}.json"
    tmp = home.inbox_tmp / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, json.dumps(message).encode())
    os.fsync(fd)
    os.close(fd)
    t0 = time.time()
    os.rename(tmp, home.inbox / name)
    return t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--drops", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ratchet-trust-bench-") as tmp:
        work = Path(tmp)
        (work / "bench_approval.yaml").write_text(MACHINE)
        result = {"per_file_us": per_file(work, args.files),
                  "latency_ms": {mode: latency(work, mode, args.drops, args.workers)
                                 for mode in ("open", "unix_user", "signature")},
                  "loadavg": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
