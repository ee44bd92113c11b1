"""kill -9 of a real process driving 40 invoice runs over 8 lanes (engine.run.concurrent),
at random moments, several times; then a last process finishes them. And a graceful stop
(SIGTERM) of such a process. On the file store and on PostgreSQL (a private server).

The invoice machine charges a card (`idempotent: false`, slow here: the bank answers after
a while, holding the fake billing API's ledger lock, so lanes queue inside their charge
step) and then sends a receipt (idempotent: the fake API dedupes by key). Proved from the
journals and the fake services' ledger:
- every run rests: finished, or escalated "unknown outcome" in `charge` (cut off mid-way);
- no charge was ever called twice for a run: a charge cut off is escalated, never re-run;
- every idempotent effect (receipt, notification) happened exactly once per key, and a
  run's receipt was always asked with the same key, whichever process asked;
- `ratchet verify` passes for every journal (structure, chain, seals).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import lanes_driver
import pytest

from engine.home import Home
from engine.run.replay import fold
from engine.run.runner import Runner
from engine.supervise.message import Message
from journal import StepStarted

from waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(lanes_driver.__file__)
RATCHET = shutil.which("ratchet") or str(Path(sys.executable).parent / "ratchet")
sys.path.append(str(ROOT / "examples"))
import fake_services  # noqa: E402

RUNS, LANES = 40, 8
IDEMPOTENT_KINDS = {"email.receipt", "notify"}


@pytest.fixture(params=["file", "postgresql"])
def store(request) -> str:
    return "file:" if request.param == "file" else request.getfixturevalue("pg_url")


def environment(home: Path, store: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return {**env, "RATCHET_HOME": str(home), "RATCHET_STORE": store,
            "RATCHET_LEDGER": str(home.parent / "ledger.jsonl"), **extra}


def driver(env: dict[str, str], machine: str = "invoice") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(DRIVER), env["RATCHET_HOME"], machine, str(RUNS), str(LANES)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ledger(env: dict[str, str]) -> list[dict]:
    return fake_services.read_ledger(Path(env["RATCHET_LEDGER"]))


@pytest.mark.slow
@pytest.mark.faults
def test_kill_9_at_random_moments_then_every_run_ends_and_no_effect_is_doubled(tmp_path, store, monkeypatch):
    home = tmp_path / "home"
    # A slow bank: a charge holds the ledger's lock while it answers, so lanes queue inside
    # their charge step and a kill at any moment cuts some charges off.
    env = environment(home, store, RATCHET_SLOW_CHARGE_S="0.02", RATCHET_SLOW_RECEIPT_S="0.005")
    rng = random.Random(20261201)
    kills = 0
    for _ in range(3):
        before = len(ledger(env))
        proc = driver(env)
        more = rng.randint(2, 12)  # ledger lines (service calls) to wait for: a random moment of the work
        wait_for(lambda want=before + more, proc=proc: len(ledger(env)) >= want or proc.poll() is not None,
                 timeout=120, what="the lanes to make progress")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += proc.returncode == -signal.SIGKILL
    assert kills >= 2  # most of them landed while the process was at work
    # Then a process kills itself right after the n-th receipt it sent (before that receipt
    # step's outcome is journaled, the other lanes wherever they are): the last process must
    # ask for that receipt again, with the same key, and the service then does nothing.
    cut = driver({**env, "RATCHET_CRASH_AT": f"after_email.receipt:{rng.randint(1, 3)}"})
    cut.communicate(timeout=120)
    assert cut.returncode == -signal.SIGKILL

    last = driver(env)
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    results = json.loads(out)

    journals = Home(home, store=store).store
    monkeypatch.setenv("RATCHET_LEDGER", env["RATCHET_LEDGER"])  # a person's retry below sends a receipt here
    for i, (status, state, reason) in enumerate(results):
        if (status, reason) == ("escalated", "stalled repeatedly"):
            # An idempotent step cut off by three kills in a row (MAX_ABANDONS) is escalated as a
            # step that keeps killing its process; a person retries it: same key, no new effect.
            run_id = f"run-{i:02d}"
            assert state == "send_receipt", (run_id, state)
            retried = Runner(Home(home, store=store), machines_dir=ROOT / "machines").deliver(
                run_id, Message(run=run_id, resolve="retry", by="ops"), source_file=f"retry-{run_id}.json")
            assert retried.accepted, retried.reason

    calls = ledger(env)
    charges = Counter(e["run_id"] for e in calls if e["kind"] == "billing.charge")
    assert max(charges.values()) == 1, charges  # never charged twice, whatever was cut off
    effects = Counter((e["kind"], e["idempotency_key"]) for e in calls if e.get("effect"))
    assert all(n == 1 for (kind, _), n in effects.items() if kind in IDEMPOTENT_KINDS), effects
    receipt_keys = defaultdict(set)
    for e in calls:
        if e["kind"] == "email.receipt":
            receipt_keys[e["run_id"]].add(e["idempotency_key"])
    assert all(keys == {f"{run}/send_receipt/1"} for run, keys in receipt_keys.items())
    rerun = [e for e in calls if e["kind"] == "email.receipt" and e["call"] > 1]
    assert rerun  # receipts cut off after their effect were asked again, with the same key, and had none

    unknown = 0
    for i in range(RUNS):
        run_id = f"run-{i:02d}"
        records = journals.read(run_id).records
        rs = fold(records)
        status, state = str(rs.status), rs.state
        if status == "escalated":  # only a charge cut off mid-way is left for a person
            assert (state, rs.escalation.reason) == ("charge", "unknown outcome"), (run_id, state, rs.escalation)
            assert effects[("notify", f"{run_id}/escalation/1")] == 1  # finance was told, once
            assert len([r for r in records if isinstance(r, StepStarted) and r.state == "charge"]) == 1
            unknown += 1
        else:
            expected = ("nothing_due" if i % 7 == 0 else "unpaid" if i % 9 == 4 else "paid")
            assert (status, state) == ("finished", expected), (run_id, status, state)
            if expected == "paid":
                assert charges[run_id] == 1 and effects[("email.receipt", f"{run_id}/send_receipt/1")] == 1
    assert unknown >= 1  # the kills did cut charges off mid-way, and those were escalated, not re-run

    verified = subprocess.run([RATCHET, "verify"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(": ok") == RUNS


HOLD = """
name: hold
version: 1
initial: hold
states:
  hold: {action: hold_actions:hold}
  after: {action: hold_actions:after}
  done: {final: true}
transitions:
  - {trigger: ok, source: hold, dest: after}
  - {trigger: ok, source: after, dest: done}
"""

HOLD_ACTIONS = '''
import os, time
from pathlib import Path

def hold(ctx):
    """Say so, then hold the step until the test releases it."""
    folder = Path(os.environ["HOLD_DIR"])
    (folder / f"started-{ctx.run_id}").touch()
    deadline = time.monotonic() + 60
    while not (folder / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.005)
    return {"held": ctx.run_id}

def after(ctx):
    (Path(os.environ["HOLD_DIR"]) / f"after-{ctx.run_id}").touch()
'''


@pytest.mark.slow
@pytest.mark.faults
def test_sigterm_drains_the_lanes_no_step_starts_after_it_and_nothing_is_left(tmp_path, store):
    machines = tmp_path / "machines"
    machines.mkdir()
    (machines / "hold.yaml").write_text(HOLD)
    (machines / "hold_actions.py").write_text(HOLD_ACTIONS)
    held = tmp_path / "held"
    held.mkdir()
    home = tmp_path / "home"
    env = environment(home, store, HOLD_DIR=str(held), DRAINED_MARKER=str(held / "drained"))

    proc = driver(env, str(machines / "hold.yaml"))
    wait_for(lambda: len(list(held.glob("started-*"))) == LANES or proc.poll() is not None, timeout=60,
             what="every lane to hold a step")
    proc.send_signal(signal.SIGTERM)  # while all eight lanes are inside their actions
    wait_for(lambda: (held / "drained").exists() or proc.poll() is not None, timeout=60, what="the drain")
    (held / "release").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err

    results = json.loads(out)
    begun = [r for r in results if r[0] != "raised"]
    assert len(begun) == LANES
    assert all(r == ["running", "after", None] for r in begun), begun  # each stopped at its next state's entry
    assert all(r[1] == "NotDrivenError" for r in results if r[0] == "raised")
    assert len(list(held.glob("started-*"))) == LANES and not list(held.glob("after-*"))  # no step after it
    journals = Home(home, store=store).store
    ids = journals.run_ids()
    assert len(ids) == LANES  # no run was even started after the signal
    assert sum(isinstance(r, StepStarted) for i in ids for r in journals.read(i).records) == LANES
    assert not any(journals.held(i) for i in ids)  # every lock let go
    assert not [p for p in home.rglob("*.tmp") if p.is_file()]  # nothing half-written to clean up

    (held / "drained").unlink()
    again = driver(env, str(machines / "hold.yaml"))  # and a later process finishes them all
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert json.loads(out) == [["finished", "done", None]] * RUNS
