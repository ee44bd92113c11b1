"""Replay stays true: whatever happens to a run, folding its journal from disk gives the
state the runner holds.

A hypothesis state machine drives runs of a test machine (a retried task, a waiting
state with approvers and a deadline, one with a `timeout` transition, a non-idempotent
task, escalations) through what can happen to them: scripted action results (success,
data, a returned trigger, a wrong result, retryable and fatal failures, a death inside
the action; a service down or a process dying for a while), triggers from approvers and
strangers, resolutions (retry, skip, abort), time passing on a FakeClock, calls from two
worker processes in any order (each a Runner with its own cache, stale whenever the
other moved the run), and crashes. A crash drops the Runner of the last call (its cache
dies with it) and may cut the journal back to any line that call wrote — every such
prefix is a state a real crash can leave, since a call writes whole batches and a crash
keeps a prefix of one — and may leave a torn tail.

After every rule: the journal verifies, and `fold(store.read(run).records)` equals the
`RunState` the runner returned, field for field. Derandomized and without a database,
so every run explores the same ~2,400 steps (about 2 s).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.replay import RunState, fold
from engine.run.runner import Delivery, Runner
from engine.supervise.message import Message
from journal import verify

import stateful_actions as acts

MACHINE = """
name: stateful
version: 1
initial: draft
on_escalate: stateful_actions:notify
states:
  draft:
    action: stateful_actions:act
    retry: {attempts: 3, backoff: 2s, factor: 2, max_backoff: 1m, jitter: true}
    non_retryable: [Fatal]
  review: {approvers: [alice, bob], timeout: 2d}
  send: {action: stateful_actions:act, idempotent: false}
  confirm: {timeout: 1h}
  done: {final: true}
  closed: {final: true, outcome: rejected}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: fast_track, source: draft, dest: send}
  - {trigger: approve, source: review, dest: send}
  - {trigger: revise, source: review, dest: draft}
  - {trigger: reject, source: review, dest: closed}
  - {trigger: ok, source: send, dest: confirm}
  - {trigger: error, source: send, dest: closed}
  - {trigger: confirm, source: confirm, dest: done}
  - {trigger: timeout, source: confirm, dest: draft}
"""

# What the actions called during one runner call do, in order (then the service's mode).
OUTCOMES = st.lists(st.sampled_from(acts.OUTCOMES), max_size=3)
WORKER = st.sampled_from([0, 1])  # which of two workers makes a call; the other's cache goes stale
SECONDS = (0.5, 3.0, 61.0, 3601.0, 2 * 86400.0 + 1)  # within a back-off, past one, past 1h, past 2d


class ReplayMachine(RuleBasedStateMachine):
    """One home, one clock, two workers; one run at a time (a new one once it ends)."""

    def __init__(self) -> None:
        super().__init__()
        acts.reset()
        self.dir = Path(tempfile.mkdtemp(prefix="ratchet-stateful-"))
        self.machine = self.dir / "stateful.yaml"
        self.machine.write_text(MACHINE)
        self.home = Home(self.dir / "home").ensure()
        self.clock = FakeClock("2026-03-02T09:00:00Z")
        self.processes = 0
        self.workers = [self._process(), self._process()]  # two workers, one home, one clock
        self.caller = 0  # the worker that made the last call
        self.runs = 0
        self.run_id: str | None = None
        self.live: RunState | None = None  # what the last call returned (None after a crash)
        self.files = 0
        self.written: tuple[int, int] = (0, 0)  # lines before and after the last call

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        acts.reset()

    # --- helpers ----------------------------------------------------------------------------

    def _process(self) -> Runner:
        self.processes += 1
        return Runner(self.home, clock=self.clock, rng=random.Random(self.processes))

    @property
    def path(self) -> Path:
        return self.home.store.path(self.run_id)

    def _lines(self) -> list[bytes]:
        data = self.path.read_bytes() if self.path.exists() else b""
        return data[: data.rfind(b"\n") + 1].splitlines(keepends=True)

    def _call(self, worker: int, call, outcomes: list[str]) -> None:
        """Have `worker` call its runner, the actions doing `outcomes` (then the service's
        mode); an action's Crash kills the worker (a new process replaces it)."""
        acts.SCRIPT[:] = outcomes
        before, self.caller = len(self._lines()), worker
        try:
            result = call(self.workers[worker])
        except acts.Crash:
            self.live = None
            self.workers[worker] = self._process()
        else:
            self.live = result.state if isinstance(result, Delivery) else result
        self.written = (before, len(self._lines()))

    def _deliver(self, worker: int, message: Message, outcomes: list[str]) -> None:
        self.files += 1
        name = f"f{self.files}.json"
        self._call(worker, lambda runner: runner.deliver(self.run_id, message, source_file=name), outcomes)

    def _started(self) -> bool:
        return self.run_id is not None and bool(self._lines())

    # --- rules ------------------------------------------------------------------------------

    @initialize()
    def start_first_run(self) -> None:
        self.start_run(0, [])

    @precondition(lambda self: not self._started() or fold(self.home.store.read(self.run_id).records).ended)
    @rule(worker=WORKER, outcomes=OUTCOMES)
    def start_run(self, worker: int, outcomes: list[str]) -> None:
        if self._started():  # the last run ended: a new one (else: its start was cut off, redo it)
            self.runs += 1
        self.run_id = f"r{self.runs}"
        launch = lambda runner: runner.launch(self.machine, {"n": self.runs}, run_id=self.run_id)  # noqa: E731
        self._call(worker, launch, outcomes)

    @rule(mode=st.sampled_from(["ok", "flaky", "crash"]))
    def service(self, mode: str) -> None:
        acts.MODE = mode

    @precondition(lambda self: self._started())
    @rule(worker=WORKER, outcomes=OUTCOMES)
    def advance(self, worker: int, outcomes: list[str]) -> None:
        self._call(worker, lambda runner: runner.advance(self.run_id), outcomes)

    @precondition(lambda self: self._started())
    @rule(seconds=st.sampled_from(SECONDS), worker=WORKER, outcomes=OUTCOMES)
    def later_advance(self, seconds: float, worker: int, outcomes: list[str]) -> None:
        """Time passes, then the supervisor advances the run (a deadline or a back-off is due)."""
        self.clock.advance(seconds)
        self.advance(worker, outcomes)

    @rule(seconds=st.sampled_from(SECONDS))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self._started())
    @rule(trigger=st.sampled_from(["approve", "revise", "reject", "confirm", "bogus"]),
          by=st.sampled_from(["alice", "bob", "mallory"]), worker=WORKER, outcomes=OUTCOMES)
    def send(self, trigger: str, by: str, worker: int, outcomes: list[str]) -> None:
        self._deliver(worker, Message(run=self.run_id, trigger=trigger, by=by), outcomes)

    @precondition(lambda self: self._started())
    @rule(pick=st.integers(0, 5), worker=WORKER, outcomes=OUTCOMES)
    def answer(self, pick: int, worker: int, outcomes: list[str]) -> None:
        """Send what the run waits for, as `ratchet status` shows it, from one who may."""
        rs = self.workers[worker].read(self.run_id)
        if rs.status == "waiting" and rs.triggers:
            by = rs.approvers[pick % len(rs.approvers)] if rs.approvers else "dave"
            trigger = rs.triggers[pick % len(rs.triggers)]
            self._deliver(worker, Message(run=self.run_id, trigger=trigger, by=by), outcomes)

    @precondition(lambda self: self._started())
    @rule(action=st.sampled_from(["retry", "skip", "abort"]),
          trigger=st.sampled_from(["ok", "approve", "reject", "fast_track", "error", "bogus"]),
          worker=WORKER, outcomes=OUTCOMES)
    def resolve(self, action: str, trigger: str, worker: int, outcomes: list[str]) -> None:
        skip = trigger if action == "skip" else None
        self._deliver(worker, Message(run=self.run_id, trigger=skip, by="carol", resolve=action), outcomes)

    @precondition(lambda self: self.run_id is not None)
    @rule(cut=st.integers(0, 6), torn=st.sampled_from([0, 1, 17, 400]))
    def crash(self, cut: int, torn: int) -> None:
        """The worker of the last call dies in it: its journal may lose up to `cut` of the
        lines that call wrote (not yet durable, then) and end in `torn` bytes of a line."""
        self.workers[self.caller] = self._process()
        self.live = None
        lines = self._lines()
        before, after = self.written
        keep = max(after - cut, min(before, after))
        lost = b"".join(lines[keep:])
        tail = (lost or b'{"type":"step_succeeded","seq":')[:torn].split(b"\n")[0]
        data = b"".join(lines[:keep]) + tail
        self.path.write_bytes(data)  # as the disk holds it after the crash
        self.written = (keep, keep)

    # --- the invariant ----------------------------------------------------------------------

    @invariant()
    def replay_equals_live(self) -> None:
        if self.run_id is None or not self.path.exists():
            return
        result = verify(self.path, run_id=self.run_id)
        assert result.ok, str(result)
        if self.live is None:
            return
        folded = fold(self.home.store.read(self.run_id).records)
        differ = {k: (v, getattr(self.live, k)) for k, v in asdict(folded).items() if getattr(self.live, k) != v}
        assert not differ, f"replay != live (replay, live): {differ}"


ReplayMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_replay_equals_the_live_state = ReplayMachine.TestCase
