"""Drive one run of a shipped machine to its end, as a real process the fault tests kill.

    python runner_driver.py HOME MACHINE RUN_ID SCENARIO_JSON

SCENARIO_JSON: {"input": {...}, "answers": {state: [answer for visit 1, visit 2, ...]}},
an answer being ["trigger", "by"] or "timeout" (move the shared FileClock to the
deadline). A run waiting for its children (a spawning state) has them run to their end,
as a supervisor's workers would, and is advanced again (it reads their ends). Each
delivery names its source file after the state and visit, so a restart re-delivering
it is recognised by the runner. The fake services get a crash point after their effect
and before they return ("mid_action"); the runner has the others.
Prints the final status as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "examples"))

import fake_services  # noqa: E402

from engine.faults import crash_point  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.run.clock import clock_from_env  # noqa: E402
from engine.run.runner import Runner  # noqa: E402


class Message:
    """What Runner.deliver reads of an inbox message (engine.supervise.message.Message is slower to import)."""

    def __init__(self, run: str, trigger: str, by: str) -> None:
        self.run, self.trigger, self.by = run, trigger, by
        self.comment, self.data, self.resolve = None, {}, None
        self.cancel, self.reason, self.upgrade = False, None, None


def install_mid_action_crash_point() -> None:
    """Wrap the fake services' one entry point: crash point after the effect, before return."""
    real_call = getattr(fake_services._call, "real", fake_services._call)

    def call_then_maybe_die(*args, **kwargs):
        entry = real_call(*args, **kwargs)  # the effect is in the ledger now
        crash_point("mid_action")
        return entry

    call_then_maybe_die.real = real_call
    fake_services._call = call_then_maybe_die


def main(home: str, machine: str, run_id: str, scenario: dict) -> dict:
    install_mid_action_crash_point()
    clock = clock_from_env()
    runner = Runner(Home(home).ensure(), clock=clock, machines_dir=ROOT / "machines")
    runner.start(machine, scenario.get("input", {}), run_id=run_id)
    for _ in range(50):
        rs = runner.run(run_id)
        if rs.status != "waiting":
            break
        if rs.brood is not None and rs.brood.state == rs.state and rs.brood.live:
            for child in rs.brood.live:
                runner.run(child)
            continue
        visit = rs.visits[rs.state]
        answer = scenario["answers"][rs.state][visit - 1]
        if answer == "timeout":
            clock.set(rs.deadline)
            continue
        trigger, by = answer
        message = Message(run=run_id, trigger=trigger, by=by)
        delivery = runner.deliver(run_id, message, source_file=f"{rs.state}-{visit}.json")
        if not delivery.accepted:
            raise SystemExit(f"delivery refused: {delivery.reason}")
    reason = rs.escalation.reason if rs.escalation else None
    return {"status": rs.status, "state": rs.state, "outcome": rs.outcome, "reason": reason}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))))
