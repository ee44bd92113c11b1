"""Stop benchmark: time from SIGTERM to the exit of `ratchet supervise` with N steps in flight.

    python bench/stop_bench.py [--runs 8] [--step 1.0] [--grace 10] [--rounds 5]

What it measures, per round, on a real `ratchet supervise --workers N` over a fresh home
in a temporary folder (real clock, real fsyncs):

- N runs of a two-step machine (`first` then `second`, each action sleeping `--step`
  seconds) are started; once all N `first` steps are in flight (each action writes its
  start time to a file), the supervisor gets SIGTERM at t0.
- `exit_s`: t0 to the supervisor's exit (what `systemctl stop` waits). A graceful stop
  waits for the steps in flight, so this is about the longest remaining step time.
- `overhead_s`: `exit_s` minus that remaining time (the last step's start + `--step` -
  t0): what the stop itself costs (draining, journaling the outcomes, stopping workers).
- It also checks what a graceful stop promises: every run's journal ends at the
  transition out of `first` (no `step_started` of `second`), nothing was killed, and
  the supervisor exited 0 (`next_steps_started`, `killed`, `exit_codes`).

Prints one JSON document: p50 and max over the rounds of `exit_s` and `overhead_s`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing

from engine.home import Home  # noqa: E402
from engine.run.runner import Runner  # noqa: E402

MACHINE = """
name: stop_bench
version: 1
initial: first
states:
  first: {action: stop_bench_actions:step}
  second: {action: stop_bench_actions:step}
  done: {final: true}
transitions:
  - {trigger: ok, source: first, dest: second}
  - {trigger: ok, source: second, dest: done}
"""
ACTIONS = '''
import os
import time
from pathlib import Path


def step(ctx):
    began = time.time()
    mark = Path(os.environ["STOP_BENCH_MARKS"]) / f"{ctx.run_id}.{ctx.state}"
    mark.with_suffix(".tmp").write_text(repr(began))
    os.replace(mark.with_suffix(".tmp"), mark)
    time.sleep(float(os.environ["STOP_BENCH_STEP_S"]) - (time.time() - began))
'''


def one_round(work: Path, machine: Path, runs: int, step: float, grace: float) -> dict:
    home = Home(work / "home").ensure()
    marks = work / "marks"
    marks.mkdir()
    runner = Runner(home)
    run_ids = [runner.start(machine, {}, run_id=f"run-{i:03d}") for i in range(runs)]
    env = {**os.environ, "RATCHET_HOME": str(home.root), "STOP_BENCH_MARKS": str(marks),
           "STOP_BENCH_STEP_S": str(step)}
    env.pop("RATCHET_CLOCK_FILE", None)
    cmd = [sys.executable, "-c", "from engine.cli import main; main()", "supervise",
           "--workers", str(runs), "--grace", str(grace)]
    with open(work / "supervise.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stderr=log)
    try:
        starts = wait_for_marks(marks, [f"{r}.first" for r in run_ids], timeout=60 + step)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(grace + 30)
        exit_s = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    remaining = max(0.0, max(starts) + step - t0)
    journals = [[json.loads(line) for line in home.store.path(r).read_text().splitlines()] for r in run_ids]
    stopped = (work / "supervise.log").read_text()
    return {"exit_s": exit_s, "overhead_s": exit_s - remaining, "exit_code": code,
            "next_steps_started": sum(1 for j in journals for r in j
                                      if r["type"] == "step_started" and r["state"] == "second"),
            "ended_at_transition": sum(1 for j in journals if j[-1]["type"] == "transition"),
            "killed": "none killed" not in stopped}


def wait_for_marks(folder: Path, names: list[str], timeout: float) -> list[float]:
    """The start times the actions wrote, once every one of `names` exists."""
    deadline = time.monotonic() + timeout
    while not all((folder / n).exists() for n in names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every step started within {timeout}s")
        time.sleep(0.005)
    return [float((folder / n).read_text()) for n in names]


def stats(values: list[float]) -> dict:
    return {"p50": round(statistics.median(values), 3), "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs in flight (= worker processes)")
    parser.add_argument("--step", type=float, default=1.0, help="seconds each step takes")
    parser.add_argument("--grace", type=float, default=10.0, help="the supervisor's --grace")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="stop-bench-") as tmp:
        machine = Path(tmp) / "stop_bench.yaml"  # one folder: a module is imported from one place
        machine.write_text(MACHINE)
        (Path(tmp) / "stop_bench_actions.py").write_text(ACTIONS)
        for n in range(args.rounds):
            work = Path(tmp) / f"round-{n}"
            work.mkdir()
            rounds.append(one_round(work, machine, args.runs, args.step, args.grace))
    print(json.dumps({
        "runs_in_flight": args.runs, "step_s": args.step, "grace_s": args.grace, "rounds": args.rounds,
        "exit_s": stats([r["exit_s"] for r in rounds]),
        "overhead_s": stats([r["overhead_s"] for r in rounds]),
        "exit_codes": sorted({r["exit_code"] for r in rounds}),
        "next_steps_started": sum(r["next_steps_started"] for r in rounds),
        "runs_ended_at_transition": sum(r["ended_at_transition"] for r in rounds),
        "rounds_with_a_kill": sum(r["killed"] for r in rounds),
    }, indent=2))


if __name__ == "__main__":
    main()
