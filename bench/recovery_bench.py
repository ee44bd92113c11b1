"""Recovery benchmark: supervisor start -> the first new record of a crashed run.

A run is crashed once (`ratchet run` killed by SIGKILL right after its step_started is
durable, via RATCHET_CRASH_AT), and its home is copied afresh for every try. Each try
starts `ratchet supervise` (or `supervise --once`) as a user would, through the console
script, and times, on the wall clock:

  imports      process start -> the CLI's first log line ("home ...": Python started and
               the modules imported that the supervisor needs before it (the fork server
               is forked just before it; older trees imported all their modules first)
  first record home line -> the `ts` of the crashed run's first new record (journals
               scanned, pool started, the run handed to a worker, which folded it and
               journaled step_abandoned + step_started)
  total        process start -> that record
  loop         process start -> "supervising N runs": the supervisor's loop is ready
               (since the head start, engine.supervise.head_start, it comes after the
               first record: the rest is imported while the worker journals)
  exit         (--once) -> the process ended
  supervisor cpu  the CPU time the supervisor's own process had used when the record
               was seen (10 ms ticks): the part of the start that load cannot shrink

Also the time a replacement worker takes (a worker killed -> its replacement's first
answer, in a pool of one started by a fresh process, as the supervisor's is) and, where
`perf` is installed, the CPU time `supervise --once` takes in all, every process it starts
included (its fork server, or forkserver and resource tracker, and the workers): `perf
stat -e task-clock` counts children whether or not anyone reaps them. On a machine others
load, CPU time says more than wall time about the work done.

Bytecode: by default the supervised processes read compiled bytecode, as an installed
Ratchet does (pip compiles it at install): PYTHONPYCACHEPREFIX points at the bench's own
folder, and one untimed try per mode fills it. `--bytecode none` keeps the environment's
PYTHONDONTWRITEBYTECODE (where set, every start compiles the engine's sources: ~45 ms of
CPU more here).

Each tree runs its own console script, as pip writes it from that tree's pyproject.toml
(`[project.scripts]`: the entry point moved to engine.cli.launch), on this Python.

Modes alternate try by try, so the machine's noise hits both alike. Prints one JSON
document with p50/p95 (and min/max) per mode and phase, in milliseconds, and the load.

    python bench/recovery_bench.py                 # 10 tries per mode
    python bench/recovery_bench.py --tries 20 --compare /tmp/main   # also an older tree, interleaved
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATCHET = Path(sys.executable).with_name("ratchet")  # the console script, as a user runs it
SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {function}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({function}())
"""  # pip's console script template

MACHINE = """
name: recovery
version: 1
initial: work
states:
  work: {action: recovery_actions:work}
  done: {final: true}
transitions:
  - {trigger: ok, source: work, dest: done}
"""
ACTIONS = "def work(ctx):\n    return {'worked': ctx.attempt}\n"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def crashed_home(folder: Path) -> Path:
    """A home holding one run whose step was in flight when its process was SIGKILLed."""
    (folder / "recovery.yaml").write_text(MACHINE)
    (folder / "recovery_actions.py").write_text(ACTIONS)
    home = folder / "home"
    env = {**os.environ, "RATCHET_HOME": str(home), "RATCHET_CRASH_AT": "before_action:1"}
    done = subprocess.run([str(RATCHET), "run", str(folder / "recovery.yaml"), "--id", "crashed"],
                          cwd=folder, env=env, capture_output=True)
    if done.returncode != -signal.SIGKILL:
        raise SystemExit(f"could not crash the run: exit {done.returncode}: {done.stderr.decode()}")
    return home


def _log_time(line: str) -> float:
    """The wall time of a `2026-11-30 20:51:03,123 ratchet supervise: ...` log line."""
    stamp = line[:23]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU the process used so far (/proc/PID/stat, in clock ticks of 10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _journal_lines(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]
    except (OSError, ValueError):
        return []


def _env(home: Path, code: Path | None, pycache: Path | None) -> dict[str, str]:
    env = {**os.environ, "RATCHET_HOME": str(home)}
    env.pop("RATCHET_CRASH_AT", None)
    if code is not None:  # another checkout of Ratchet, ahead of the installed one on the path
        env["PYTHONPATH"] = str(code)
    if pycache is not None:  # bytecode, as an installed Ratchet has it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache / (code.name if code else "this"))
    return env


def console_script(code: Path | None, folder: Path) -> Path:
    """The `ratchet` script of the tree `code` (None: the one installed here)."""
    if code is None:
        return RATCHET
    entry = tomllib.loads((code / "pyproject.toml").read_text())["project"]["scripts"]["ratchet"]
    module, function = entry.split(":")
    script = folder / f"bin-{code.name}" / "ratchet"
    script.parent.mkdir(exist_ok=True)
    script.write_text(SCRIPT.format(python=sys.executable, module=module, function=function))
    script.chmod(0o755)
    return script


def _fresh_home(template: Path, work: Path) -> Path:
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(template, home)
    return home


def cpu_try(template: Path, work: Path, code: Path | None, pycache: Path | None) -> float:
    """CPU ms of `supervise --once` recovering the run, all its processes included (perf)."""
    home = _fresh_home(template, work)
    out = work / "perf.csv"
    script = console_script(code, work.parent)
    subprocess.run(["perf", "stat", "-x,", "-e", "task-clock", "-o", str(out), str(script), "supervise", "--once"],
                   cwd=template.parent, env=_env(home, code, pycache), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=120)
    line = next(line for line in out.read_text().splitlines() if "task-clock" in line)
    return round(float(line.split(",")[0]), 1)


REPLACEMENT = """
import json, sys, time
from pathlib import Path
from engine.supervise.forkserver import start_forkserver
from engine.supervise.jobs import Job
from engine.supervise.workers import WorkerPool

start_forkserver()  # as `ratchet supervise` does (a no-op in trees that had none of their own)
pool = WorkerPool(1, Path(sys.argv[1]))
pool.start()
times = []
for _ in range(int(sys.argv[2])):
    worker = pool.submit(Job("nobody"))
    began = time.perf_counter()
    pool.kill(worker, "bench")  # SIGKILL, then the replacement is started
    pool.submit(Job("nobody"))  # an unknown run: answered with an error, at once
    while not pool.collect():
        pool.workers[0].conn.poll(1)
    times.append((time.perf_counter() - began) * 1000)
pool.stop(1)
pool.close()
print(json.dumps(times))
"""


def replacement_tries(home: Path, tries: int, code: Path | None, pycache: Path | None) -> list[float]:
    """ms from a worker's SIGKILL to its replacement's first answer, `tries` times."""
    out = subprocess.run([sys.executable, "-c", REPLACEMENT, str(home), str(tries)], env=_env(home, code, pycache),
                         capture_output=True, text=True, check=True, timeout=300)
    return [round(t, 1) for t in json.loads(out.stdout)]


def one_try(template: Path, work: Path, once: bool, code: Path | None = None,
            pycache: Path | None = None) -> dict[str, float]:
    home = _fresh_home(template, work)
    journal = home / "runs" / "crashed.jsonl"
    before = len(_journal_lines(journal))
    env = _env(home, code, pycache)
    args = [str(console_script(code, work.parent)), "supervise", *(["--once"] if once else [])]
    log = work / "supervise.log"
    with open(log, "wb") as err:
        began = time.time()
        proc = subprocess.Popen(args, cwd=template.parent, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = began + 60
    first: dict | None = None
    while first is None:
        lines = _journal_lines(journal)
        if len(lines) > before:
            first = lines[before]
            cpu_at_first = _cpu_seconds(proc.pid)
        elif time.time() > deadline:
            proc.kill()
            raise SystemExit(f"no new record within 60 s; log:\n{log.read_text()}")
        else:
            time.sleep(0.001)
    if once:
        proc.wait(60)
    else:
        proc.send_signal(signal.SIGTERM)
    ended = time.time()
    proc.wait(60)
    if once:
        ended = time.time() if proc.returncode is None else ended
    text = log.read_text().splitlines()
    home_line = next(line for line in text if "ratchet supervise: home " in line)
    supervising = next(line for line in text if "ratchet supervise: supervising " in line)
    record_at = datetime.fromisoformat(first["ts"].replace("Z", "+00:00")).timestamp()
    phases = {
        "imports": _log_time(home_line) - began,
        "first record": record_at - _log_time(home_line),
        "total": record_at - began,
        "loop": _log_time(supervising) - began,
        "supervisor cpu": cpu_at_first,
    }
    if once:
        phases["exit"] = ended - record_at
    return {k: _ms(v) for k, v in phases.items()}


def summary(tries: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for phase in tries[0]:
        values = sorted(t[phase] for t in tries)
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        out[phase] = {"p50": round(statistics.median(values), 1), "p95": p95, "min": values[0], "max": values[-1]}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=10, help="tries per mode (default 10)")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="also time the Ratchet source tree in DIR (e.g. an older commit, `git archive`d), "
                             "interleaved try by try with this one")
    parser.add_argument("--bytecode", choices=("cached", "none"), default="cached",
                        help="cached (default): compiled once, as installed; none: as the environment says")
    args = parser.parse_args(argv)
    if not RATCHET.exists():
        raise SystemExit(f"{RATCHET}: not found; install Ratchet in this Python's environment first")
    folder = Path(tempfile.mkdtemp(prefix="ratchet-recovery-", dir=ROOT))
    try:
        template = crashed_home(folder)
        work = folder / "try"
        work.mkdir()
        modes: dict[str, Path | None] = {"supervise": None, "supervise --once": None}
        if args.compare:
            modes.update({f"{args.compare}: supervise": args.compare.resolve(),
                          f"{args.compare}: supervise --once": args.compare.resolve()})
        pycache = folder / "pycache" if args.bytecode == "cached" else None
        if pycache is not None:
            for mode, code in modes.items():  # untimed: fills the bytecode cache
                one_try(template, work, once=mode.endswith("--once"), code=code, pycache=pycache)
        perf = shutil.which("perf") is not None
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes if mode.endswith("--once")}
        for _ in range(args.tries):
            for mode, code in modes.items():
                results[mode].append(one_try(template, work, once=mode.endswith("--once"), code=code, pycache=pycache))
                if perf and mode in cpu:
                    cpu[mode].append(cpu_try(template, work, code, pycache))
        replacement = {mode.removesuffix("supervise").rstrip(": ") or "this tree":
                       summary([{"ms": t} for t in replacement_tries(work / "home", args.tries, code, pycache)])["ms"]
                       for mode, code in modes.items() if not mode.endswith("--once")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    p50 = statistics.median(t["total"] for t in results["supervise"])
    return {
        "command": " ".join(["python", "bench/recovery_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews every figure
        "cpus": os.cpu_count(),
        "tries_per_mode": args.tries,
        "bytecode": "cached (as installed)" if args.bytecode == "cached" else
                    f"as the environment says (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE')})",
        "ms": {mode: summary(tries) for mode, tries in results.items()},
        "replacement_worker_ms": replacement,
        "cpu_ms_all_processes": {mode: summary([{"cpu": v} for v in values])["cpu"]
                                 for mode, values in cpu.items() if values} or "perf not installed",
        "targets": {"supervise: start -> first record of a crashed run, p50 < 100 ms": p50 < 100},
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
