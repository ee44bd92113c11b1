"""Metrics benchmark: what `--metrics-port` adds to the supervisor's fold, and one scrape's cost.

Folds the 16 fixture journals (tests/fixtures/journals) as 10,000 runs, with and without
the metrics observer (`Metrics.run_changed` per run, its records counted), then times a
full scrape (`collect` + the text format) of those 10,000 runs. Prints one JSON document.

    python bench/metrics_bench.py                 # pip install -e '.[metrics]' first
    python bench/metrics_bench.py --runs 50000 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing

from prometheus_client import generate_latest  # noqa: E402

from engine.run.clock import FakeClock  # noqa: E402
from engine.run.replay import RunState  # noqa: E402
from engine.supervise.metrics import Metrics  # noqa: E402
from journal import decode  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "journals"


def journals() -> list[list]:
    return [[decode(line) for line in path.read_bytes().splitlines()] for path in sorted(FIXTURES.glob("*.jsonl"))]


def fold_all(runs: int, records: list[list], metrics: Metrics | None) -> float:
    began = time.perf_counter()
    for i in range(runs):
        batch = records[i % len(records)]
        state = RunState()
        for record in batch:
            state.apply(record)
        if metrics is not None:
            metrics.run_changed(f"run-{i}", state, batch)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = journals()
    count = sum(len(records[i % len(records)]) for i in range(args.runs))
    plain, observed, scrapes = [], [], []
    for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
        plain.append(fold_all(args.runs, records, None))
        metrics = Metrics(FakeClock("2026-12-28T09:00:00Z"))
        metrics.counting = True
        observed.append(fold_all(args.runs, records, metrics))
        began = time.perf_counter()
        text = generate_latest(metrics.registry)
        scrapes.append(time.perf_counter() - began)
    p50 = statistics.median
    print(json.dumps({
        "runs": args.runs, "records": count, "rounds": args.rounds,
        "fold_s_p50": round(p50(plain), 4), "fold_with_metrics_s_p50": round(p50(observed), 4),
        "metrics_us_per_record": round(1e6 * (p50(observed) - p50(plain)) / count, 2),
        "scrape_ms_p50": round(1000 * p50(scrapes), 2), "scrape_ms_max": round(1000 * max(scrapes), 2),
        "scrape_bytes": len(text),
    }, indent=2))


if __name__ == "__main__":
    main()
