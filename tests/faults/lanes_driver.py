"""Drive COUNT runs of one machine over THREADS lanes in one process (`Ratchet.run_here`),
as a real process the fault tests kill or stop.

    python lanes_driver.py HOME MACHINE COUNT THREADS

Run i is `run-<i>` with the input {"customer", "amount_cents", "card"} the invoice machine
reads (every 7th owes nothing, every 9th from the 5th has its card declined); a run that
exists is advanced. The store is $RATCHET_STORE's. Prints one JSON list: per run
[status, state, escalation reason], or ["raised", exception type, message].
SIGTERM and SIGINT drain the lanes (Ratchet.run_here). Each fake service call passes the
crash point `after_<kind>` (e.g. `after_email.receipt`) after its effect and before it
returns, so RATCHET_CRASH_AT=after_email.receipt:2 kills the process right after the second
receipt sent, while the other lanes are wherever they are. With $DRAINED_MARKER set, that
file is made once the driver has been drained (by the signal), so a test knows when.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "examples"))

import fake_services  # noqa: E402

from engine import Ratchet  # noqa: E402
from engine.api import Launch  # noqa: E402
from engine.faults import crash_point  # noqa: E402
from engine.run.concurrent import Driver  # noqa: E402


def install_crash_points() -> None:
    """Wrap the fake services' one entry point: a crash point after each call's effect."""
    real_call = fake_services._call

    def call_then_maybe_die(kind, *args, **kwargs):
        entry = real_call(kind, *args, **kwargs)  # the effect is in the ledger now
        crash_point(f"after_{kind}")
        return entry

    fake_services._call = call_then_maybe_die


def inputs(i: int) -> dict:
    return {"customer": f"c{i}", "amount_cents": 0 if i % 7 == 0 else 100 + i,
            "card": "declined" if i % 9 == 4 else "visa"}


def mark_drains(marker: Path) -> None:
    """Make `marker` once the driver is drained (after the real drain: the lanes know by then)."""
    real_drain = Driver.drain

    def drain(self: Driver) -> None:
        real_drain(self)
        marker.touch()

    Driver.drain = drain  # type: ignore[method-assign]


def main(home: str, machine: str, count: int, threads: int) -> list:
    install_crash_points()
    if os.environ.get("DRAINED_MARKER"):
        mark_drains(Path(os.environ["DRAINED_MARKER"]))
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
