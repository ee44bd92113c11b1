"""Drive COUNT runs of one machine over THREADS lanes in one process (`Ratchet.run_here`),
as a real process the fault tests kill or stop.

    python lanes_driver.py HOME MACHINE COUNT THREADS

Run i is `run-<i>` with the input {"customer", "amount_cents", "card"} the invoice machine
reads (every 7th owes nothing, every 9th from the 5th has its card declined); a run that
exists is advanced. The store is $RATCHET_STORE's. Prints one JSON list: per run
[status, state, escalation reason], or ["raised", exception type, message].
SIGTERM and SIGINT drain the lanes (Ratchet.run_here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from engine import Ratchet  # noqa: E402
from engine.api import Launch  # noqa: E402


def inputs(i: int) -> dict:
    return {"customer": f"c{i}", "amount_cents": 0 if i % 7 == 0 else 100 + i,
            "card": "declined" if i % 9 == 4 else "visa"}


def main(home: str, machine: str, count: int, threads: int) -> list:
    ratchet = Ratchet(home=home, machines_dir=ROOT / "machines")
    jobs = [Launch(machine, inputs(i), run_id=f"run-{i:02d}") for i in range(count)]
    out = []
    for result in ratchet.run_here(jobs, threads=threads):
        if isinstance(result, BaseException):
            out.append(["raised", type(result).__name__, str(result)])
        else:
            out.append([str(result.status), result.state, result.escalation.reason if result.escalation else None])
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
