"""Seal benchmark: what sealing journals costs a run, and how fast sealed journals verify.

1. Runs/s with and without seals, in the same invocation and folder, in interleaved
   rounds (sealed, unsealed, sealed, ...) so disk noise hits both alike: N runs x K task
   steps per round, each run ending sealed (one seal, in the batch of its `run_finished`)
   and its seal kept in `seals/<id>.json` (a durable side file). Reports the median of
   the rounds, the cost per run, and the syncs per run counted on the real calls.
2. The parts of one seal: the Ed25519 signature alone, `seal_after` (sign + hash the
   batch), and the side file's durable publish (write, fsync, rename, folder fsync).
3. Verify: the sealed journals of (1), checked as `ratchet verify` does (side file, chain,
   seals) against the chain alone; journals/s and records/s.

    python bench/seal_bench.py                         # 5 rounds x 200 runs x 5 steps
    python bench/seal_bench.py --rounds 7 --runs 500 --dir /data

Prints one JSON document.
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
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # run from a clone without installing

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from runner_bench import write_machine  # noqa: E402

from engine.home import Home  # noqa: E402
from engine.run.clock import FakeClock  # noqa: E402
from engine.run.runner import Runner  # noqa: E402
from engine.run.sealing import home_public_key  # noqa: E402
from journal import Sealed, StepStarted, StepSucceeded, Transition  # noqa: E402
from journal.seal import check, fetch_seal, message, publish_seal, seal_after  # noqa: E402
from journal.store import Cursor  # noqa: E402

SYNCS: Counter[str] = Counter()


def _counting(name: str):
    real = getattr(os, name)

    def call(fd: int) -> None:
        SYNCS[name] += 1
        real(fd)
    return call


def round_of_runs(home: Home, machine: Path, runs: int, prefix: str, sealing: bool) -> float:
    runner = Runner(home, clock=FakeClock(), sealing=sealing)
    began = time.perf_counter()
    for i in range(runs):
        if runner.launch(machine, {"i": i}, run_id=f"{prefix}-{i:05d}").status != "finished":
            raise RuntimeError("a bench run did not finish")
    return time.perf_counter() - began


def runs_with_and_without(folder: Path, rounds: int, runs: int, steps: int) -> tuple[dict, Home]:
    machine = write_machine(folder, steps)
    home = Home(folder / "home").ensure()
    round_of_runs(home, machine, 20, "warm", True)  # imports, the key's creation, the page cache
    seconds: dict[bool, list[float]] = {True: [], False: []}
    syncs: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    for r in range(rounds):
        for sealing in ((True, False) if r % 2 == 0 else (False, True)):
            SYNCS.clear()
            seconds[sealing].append(round_of_runs(home, machine, runs, f"{'s' if sealing else 'u'}{r}", sealing))
            syncs[sealing] += SYNCS
    med = {s: statistics.median(seconds[s]) for s in (True, False)}
    per_run = {s: {k: round(v / (rounds * runs), 2) for k, v in sorted(syncs[s].items())} for s in (True, False)}
    return {
        "rounds": rounds, "runs_per_round": runs, "steps_per_run": steps, "seals_per_run": 1,
        "sealed_runs_per_s": round(runs / med[True], 1), "unsealed_runs_per_s": round(runs / med[False], 1),
        "sealed_over_unsealed": round(med[False] / med[True], 3),
        "cost_per_run_us": round((med[True] - med[False]) / runs * 1e6, 1),
        "sealed_runs_per_s_rounds": [round(runs / s, 1) for s in seconds[True]],
        "unsealed_runs_per_s_rounds": [round(runs / s, 1) for s in seconds[False]],
        "syncs_per_run_sealed": per_run[True], "syncs_per_run_unsealed": per_run[False],
    }, home


def parts(folder: Path, n: int = 2000) -> dict:
    key = Ed25519PrivateKey.generate()
    text = message("run-00001", 12, "ab" * 32)
    began = time.perf_counter()
    for _ in range(n):
        key.sign(text)
    sign_us = (time.perf_counter() - began) / n * 1e6
    batch = [StepSucceeded(state="s5", attempt=1, trigger="ok", ts="2026-11-27T09:00:00.000000Z"),
             Transition(trigger="ok", source="s5", dest="done", ts="2026-11-27T09:00:00.000000Z"),
             StepStarted(state="x", attempt=1, idempotency_key="k", ts="2026-11-27T09:00:00.000000Z")]
    began = time.perf_counter()
    for _ in range(n):
        seal_after(batch, Cursor(11, "cd" * 32), key, "run-00001")
    seal_us = (time.perf_counter() - began) / n * 1e6
    home = Home(folder / "side").ensure()
    seal = Sealed(through=11, head="cd" * 32, key="0" * 16, sig="A" * 88, seq=12, ts="x", prev="cd" * 32)
    began = time.perf_counter()
    for i in range(n // 4):
        publish_seal(home.store, f"run-{i:05d}", seal)
    publish_us = (time.perf_counter() - began) / (n // 4) * 1e6
    return {"sign_us": round(sign_us, 1), "seal_after_us": round(seal_us, 1),
            "side_file_publish_us": round(publish_us, 1)}


def verify_rate(home: Home) -> dict:
    store = home.store
    ids = [i for i in store.run_ids() if i.startswith("s")]
    public = home_public_key(home)
    records = 0
    began = time.perf_counter()
    for run_id in ids:
        if not store.verify(run_id).ok:
            raise RuntimeError(f"{run_id}: the chain does not verify")
    chain_s = time.perf_counter() - began
    began = time.perf_counter()
    for run_id in ids:  # as `ratchet verify` does: side file first, chain, then the seals
        side = fetch_seal(store, run_id)
        result = store.verify(run_id)
        sealed = check(store.read(run_id).records, run_id, public, side)
        if not (result.ok and sealed.ok and sealed.sealed):
            raise RuntimeError(f"{run_id}: {result} / {sealed}")
        records += result.records
    sealed_s = time.perf_counter() - began
    return {"journals": len(ids), "records": records,
            "chain_only_journals_per_s": round(len(ids) / chain_s, 1),
            "chain_and_seals_journals_per_s": round(len(ids) / sealed_s, 1),
            "chain_and_seals_records_per_s": round(records / sealed_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200, help="runs per round and per mode")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ratchet-seal-bench-", dir=args.dir))
    os.fsync, os.fdatasync = _counting("fsync"), _counting("fdatasync")  # counted, then called
    try:
        runs, home = runs_with_and_without(folder, args.rounds, args.runs, args.steps)
        out = {"runs": runs, "one_seal": parts(folder), "verify": verify_rate(home)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
