"""Kill -9 the runner at every crash point of every shipped machine, restart, and prove
from the journal and the fake services' ledger that nothing was lost or repeated.

For each scenario a clean run first counts every crash point it passes (after each
journal fsync, before each action, inside each service call after its effect, after each
action before its outcome is journaled). Then, for every point and every occurrence of
it (all of them, not a sample), a fresh run is killed there with SIGKILL, restarted
until it ends, and checked:
- the journal verifies (seq and hash chain);
- the run ends like the clean run, or, if the kill left a non-idempotent step in flight,
  is escalated "unknown outcome" and that step's service was not called again;
- every idempotent effect happened exactly once per idempotency key, non-idempotent
  effects at most once, and no step completed before the kill was called again.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from engine.run.replay import fold
from journal import FileStore, StepStarted, StepSucceeded, Transition
from journal.records import ChildFinished, Spawned
from journal.verify import verify

import runner_driver
from forked import run_forked

ROOT = Path(__file__).resolve().parents[2]
POINTS = ("after_append", "before_action", "mid_action", "after_action", "after_child_created")
FANOUT = Path(__file__).resolve().parent / "fanout"  # spawning machines with the other joins
# Joins that may hold before every child ran: after a restart the parent can join first,
# and the children it no longer waits for are not run (a supervisor cancels them).
EARLY_JOIN = {"contract_join_any", "contract_join_quorum"}
NON_IDEMPOTENT_KINDS = {"email.send", "billing.charge"}

CLAUSES = ["Payment within 30 days.", "Unlimited liability.", "Notice of 90 days.", "Exclusive supply."]

SCENARIOS = {
    "renewal_approved": ("renewal_review.yaml", {
        "input": {"customer": "acme"}, "answers": {"review": [["approve", "alice"]]}}, {}),
    "renewal_revised": ("renewal_review.yaml", {
        "input": {"customer": "acme"},
        "answers": {"review": [["revise", "bob"], ["reject", "alice"]]}}, {}),
    "onboarding": ("customer_onboarding.yaml", {
        "input": {"customer": "zeta"}, "answers": {"awaiting_reply": ["timeout", ["reply", "zeta"]]}}, {}),
    "onboarding_no_reply": ("customer_onboarding.yaml", {
        "input": {"customer": "zeta"}, "answers": {"awaiting_reply": ["timeout"] * 3}}, {}),
    "invoice_flaky": ("invoice.py", {
        "input": {"customer": "acme", "amount_cents": 1200}}, {"RATCHET_FLAKY_FAILURES": "1"}),
    "invoice_declined": ("invoice.py", {
        "input": {"customer": "acme", "amount_cents": 500, "card": "declined"}}, {}),
    # Fan-out: kills between the spawn's record and its children, between children created,
    # in the children's steps, after a child ended and before its parent journaled it.
    "clause_review_flaky": ("clause_review.yaml", {"input": {"item": "unlimited liability"}},
                            {"RATCHET_FLAKY_REVIEWS": "1"}),
    "contract_join_all": ("contract_review.yaml", {"input": {"clauses": CLAUSES},
                                                   "answers": {"legal_signoff": [["approve", "lee"]]}}, {}),
    "contract_join_any": (str(FANOUT / "review_any.yaml"), {"input": {"clauses": CLAUSES}}, {}),
    "contract_join_quorum": (str(FANOUT / "review_quorum.yaml"), {"input": {"clauses": CLAUSES}},
                             {"RATCHET_FLAKY_REVIEWS": "1"}),
}


def test_every_shipped_machine_has_a_scenario():
    shipped = {p.name for p in (ROOT / "machines").iterdir()
               if p.suffix in (".yaml", ".yml") or (p.suffix == ".py" and not p.stem.endswith("_actions"))}
    assert shipped <= {machine for machine, _, _ in SCENARIOS.values()}


class Case:
    """One run in its own folder: home, ledger, clock file."""

    def __init__(self, folder: Path, scenario: str) -> None:
        self.folder = folder
        self.machine, self.scenario, self.extra_env = SCENARIOS[scenario]
        folder.mkdir(parents=True)
        (folder / "clock").write_text("2026-11-27T09:00:00.000000Z")

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
        env.update(RATCHET_CLOCK_FILE=str(self.folder / "clock"),
                   RATCHET_LEDGER=str(self.folder / "ledger.jsonl"), **self.extra_env, **extra)
        return env

    def drive(self, **extra: str) -> tuple[int, object]:
        """Run the driver in a forked child (tests/faults/forked.py). Returns (exit code or
        -signal, the driver's result or the child's traceback)."""
        def work() -> object:
            return runner_driver.main(str(self.folder / "home"), str(ROOT / "machines" / self.machine),
                                      "run1", self.scenario)

        return run_forked(work, self.env(**extra), self.folder / "result.json", cwd=self.folder)

    @property
    def store(self) -> FileStore:
        return FileStore(self.folder / "home")

    def ledger(self) -> list[dict]:
        path = self.folder / "ledger.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def clean_run(tmp_path: Path, scenario: str) -> tuple[dict, Counter, list[dict]]:
    case = Case(tmp_path / "clean", scenario)
    counts = case.folder / "counts"
    code, result = case.drive(RATCHET_CRASH_COUNT=str(counts))
    assert code == 0, result
    return result, Counter(counts.read_text().split()), case.ledger()


def kill_and_restart(folder: Path, scenario: str, point: str, n: int, clean: dict, clean_ledger: list) -> list[str]:
    """Every problem found for a kill at the n-th `point` (empty list: all good)."""
    case = Case(folder, scenario)
    where = f"{scenario} killed at {point}:{n}"
    code, result = case.drive(RATCHET_CRASH_AT=f"{point}:{n}")
    if code != -signal.SIGKILL:
        return [f"{where}: expected SIGKILL, got exit {code}: {result}"]
    if not case.store.exists("run1"):
        return []  # killed before the run's first record was created (nothing to check)
    before = case.store.read("run1").records
    in_flight = fold(before).in_flight if before else None
    ledger_before = len(case.ledger())
    code, end = case.drive()
    if code != 0:
        return [f"{where}: restart failed: {end}"]
    problems = check(case, where, end, before, in_flight, ledger_before, clean, clean_ledger,
                     early_join=scenario in EARLY_JOIN)
    return problems + fanout_problems(case, where)


def fanout_problems(case: Case, where: str) -> list[str]:
    """A parent's children: exactly those its `spawned` records list exist, each once, each
    linked to it, each end journaled at most once, and the join fired at most once."""
    records = case.store.read("run1").records
    spawned = [c.run_id for r in records if isinstance(r, Spawned) for c in r.children]
    if not spawned:
        return []
    problems = []
    if len(spawned) != len(set(spawned)):
        problems.append(f"{where}: a child was spawned twice: {spawned}")
    existing = sorted(i for i in case.store.run_ids() if i.startswith("run1."))
    if existing != sorted(spawned):
        problems.append(f"{where}: children {existing} exist, the parent spawned {sorted(spawned)}")
    for child in existing:
        first = case.store.read(child).records[0]
        if (first.parent, first.parent_state) != ("run1", "review_clauses"):
            problems.append(f"{where}: {child} is not linked to its parent: {first}")
    ends = [r.child for r in records if isinstance(r, ChildFinished)]
    if len(ends) != len(set(ends)):
        problems.append(f"{where}: a child's end was journaled twice: {ends}")
    joins = [r for r in records if isinstance(r, Transition) and r.trigger in ("joined", "failed")]
    if len(joins) != 1:
        problems.append(f"{where}: the join fired {len(joins)} times")
    return problems


def check(case: Case, where: str, end: dict, before: list, in_flight, ledger_before: int,
          clean: dict, clean_ledger: list, *, early_join: bool = False) -> list[str]:
    problems = []
    result = verify(case.store.path("run1"), run_id="run1")
    if not result.ok:
        problems.append(f"{where}: journal does not verify: {result}")
    machine_state = fold(case.store.read("run1").records)
    ledger = case.ledger()
    effects = Counter((e["kind"], e["idempotency_key"]) for e in ledger if e.get("effect"))
    if any(count > 1 for count in effects.values()):
        problems.append(f"{where}: an effect happened twice: {effects}")
    unsafe = in_flight is not None and not _idempotent(machine_state, in_flight.state)
    if unsafe:
        if end["reason"] != "unknown outcome":
            problems.append(f"{where}: non-idempotent step in flight, but run ended {end}")
        again = [e for e in ledger[ledger_before:] if e["idempotency_key"] == in_flight.idempotency_key]
        if again:
            problems.append(f"{where}: non-idempotent step called again after the crash: {again}")
    else:
        if end != clean:
            problems.append(f"{where}: ended {end}, the clean run ended {clean}")
        wanted = Counter((e["kind"], e["idempotency_key"]) for e in clean_ledger if e.get("effect"))
        if effects != wanted and not (early_join and set(effects) <= set(wanted)):
            problems.append(f"{where}: effects {dict(effects)} differ from the clean run's {dict(wanted)}")
    completed = _completed_keys(before)
    repeated = [e for e in ledger[ledger_before:] if e["idempotency_key"] in completed]
    if repeated:
        problems.append(f"{where}: a step completed before the kill ran again: {repeated}")
    return problems


def _idempotent(rs, state: str) -> bool:
    return rs.definition["states"][state]["idempotent"]


def _completed_keys(records: list) -> set[str]:
    done, key = set(), None
    for r in records:
        if isinstance(r, StepStarted):
            key = r.idempotency_key
        elif isinstance(r, StepSucceeded):
            done.add(key)
    return done


@pytest.mark.parametrize("scenario", [pytest.param(name, marks=pytest.mark.slow) if name.startswith("contract_")
                                      else name for name in sorted(SCENARIOS)])
def test_kill_at_every_point_then_restart(tmp_path: Path, scenario: str):
    clean, counts, clean_ledger = clean_run(tmp_path, scenario)
    assert counts["after_append"] and counts["before_action"]
    cases = [(p, n) for p in POINTS for n in range(1, counts[p] + 1)]
    problems = [problem for point, n in cases
                for problem in kill_and_restart(tmp_path / f"{point}-{n}", scenario, point, n,
                                                clean, clean_ledger)]
    assert not problems, "\n".join(problems)
    assert len(cases) == sum(counts[p] for p in POINTS)
