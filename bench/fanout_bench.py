"""Fan-out benchmark: one parent spawns 1,000 child runs and joins them, under `ratchet supervise`.

    python bench/fanout_bench.py [--children 1000] [--workers 2] [--max-parallel N]

Prints one JSON document. A real `ratchet supervise` subprocess (default workers: 2)
over a fresh home in a temporary folder drives a parent whose spawning state starts one
child per item of a list (each child: one task step, a no-op action, then final) and
joins them all. The parent is created first (`Runner.start`: its `run_started` only);
the clock starts when the supervisor is launched. From the journals' own `ts`:

- wall: supervisor launched -> the parent's `run_finished` (includes start-up);
- children/s: children / (last child's `run_finished` - the parent's first `spawned`);
- join latency: the parent's `transition` on `joined` - the last child's `run_finished`
  (how long the parent takes to notice the last end and join).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.home import Home  # noqa: E402
from engine.run.runner import Runner  # noqa: E402
from journal import FileStore, RunFinished, Transition  # noqa: E402
from journal.records import Spawned  # noqa: E402

PARENT = """
name: bench_parent
version: 1
initial: fan
states:
  fan:
    spawn: {machine: bench_child, for_each: items, join: all MAX}
    timeout: 1d
  done: {final: true, outcome: joined}
  failed: {final: true, outcome: failed}
transitions:
  - {trigger: joined, source: fan, dest: done}
  - {trigger: failed, source: fan, dest: failed}
  - {trigger: timeout, source: fan, dest: failed}
"""
CHILD = """
name: bench_child
version: 1
initial: work
states:
  work: {action: bench_fan_actions:work}
  done: {final: true, outcome: ok}
transitions:
  - {trigger: ok, source: work, dest: done}
"""
ACTIONS = "def work(ctx):\n    return {'n': ctx.input['item']}\n"


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def run(children: int, workers: int, max_parallel: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="ratchet-fanout-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        limit = f", max_parallel: {max_parallel}" if max_parallel else ""
        (work / "bench_parent.yaml").write_text(PARENT.replace(" MAX", limit))
        (work / "bench_child.yaml").write_text(CHILD)
        (work / "bench_fan_actions.py").write_text(ACTIONS)
        home = Home(work / "home").ensure()
        Runner(home, machines_dir=work).start(work / "bench_parent.yaml", {"items": list(range(children))},
                                              run_id="parent")
        env = {**os.environ, "RATCHET_HOME": str(home.root)}
        env.pop("RATCHET_CLOCK_FILE", None)
        cmd = [sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--workers", str(workers)]
        launched = time.time()
        proc = subprocess.Popen(cmd, cwd=work, env=env, stderr=subprocess.DEVNULL)
        store = FileStore(home.root)
        try:
            while True:
                records = store.read("parent").records
                if isinstance(records[-1], RunFinished):
                    break
                if time.time() - launched > 1800:
                    raise SystemExit("fanout_bench: the parent did not finish within 30 minutes")
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(60)
        first_spawn = next(ts(r.ts) for r in records if isinstance(r, Spawned))
        joined = next(ts(r.ts) for r in records if isinstance(r, Transition) and r.trigger == "joined")
        ends = [ts(store.read(f"parent.fan.{i}").records[-1].ts) for i in range(children)]
        last = max(ends)
        return {
            "children": children,
            "workers": workers,
            "max_parallel": max_parallel,
            "wall_s": round(ts(records[-1].ts) - launched, 2),
            "children_per_s": round(children / (last - first_spawn), 1),
            "join_latency_ms": round((joined - last) * 1000, 1),
            "parent_records": len(records),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-parallel", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.children, args.workers, args.max_parallel), indent=2))


if __name__ == "__main__":
    main()
