"""`ratchet supervise`: keep every run moving, with nobody watching.

One loop in one thread. It keeps a `RunState` per run, folded incrementally from the
journals (each journal's read offset is kept, so a change costs only its new bytes), a
heap of deadlines (waiting timeouts, retry due dates), and the inbox. It never runs an
action itself: each `advance` or `deliver` goes to a worker process (engine.supervise.workers),
at most one job per run at a time. The journal's lock, taken by the Runner inside the
worker, is what guarantees a single writer per run even with two supervisors on one home.

Sleeping: until the next deadline, a worker's answer or death, or a hint from the
watcher (engine.supervise.watcher), capped so that a `FileClock` change is noticed; a full rescan
of `runs/` and `inbox/` every `rescan` seconds covers missed events.
"""

from __future__ import annotations

import heapq
import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import wait
from pathlib import Path

from engine.run import tickets
from engine.supervise import inbox
from engine.run.clock import Clock, FileClock, clock_from_env, parse_iso
from engine.home import Home
from engine.supervise.inbox import Claimed, ClaimBox
from engine.supervise.message import InvalidMessageError, Message
from engine.run.replay import RunState
from engine.supervise.watcher import Watcher, Wakeup
from engine.supervise.workers import Job, Result, WorkerPool
from journal import JournalError, read

log = logging.getLogger("ratchet.supervisor")

MOVING = "running"  # the only status that needs a worker without a deadline or a message
LOCKED_BACKOFF = 0.5  # another process advances the run: look again soon
MAX_BACKOFF = 60.0  # a run whose advance keeps failing is retried at most this rarely
DELIVERY_TRIES = 3  # an engine error on delivery; then the file is rejected with it
JOB_TIMEOUT = 300.0  # a job with no step of its own in flight (replay, on_escalate) may take this long


@dataclass
class Tracked:
    """A run as the supervisor knows it: its folded state and where its journal was read to."""

    state: RunState
    offset: int = 0
    last_hash: str | None = None
    failures: int = 0  # consecutive failed jobs: drives the back-off
    broken: str = ""  # a corrupt journal: left alone, shown in the log

    @property
    def status(self) -> str:
        return "damaged" if self.broken else self.state.status


class Supervisor:
    """Drives every run under `home` until stopped (or, with `once`, until nothing is due)."""

    def __init__(self, home: Home, *, workers: int = 2, clock: Clock | None = None,
                 machines_dir: Path = Path("machines"), rescan: float = 5.0, grace: float = 10.0,
                 settle: float = 1.0, job_timeout: float = JOB_TIMEOUT) -> None:
        self.home = home
        self.clock = clock or clock_from_env()
        self.rescan = rescan
        self.grace = grace
        self.settle = settle
        self.job_timeout = job_timeout
        # A FileClock moves by a file write nobody signals: poll it often.
        self.tick = 0.2 if isinstance(self.clock, FileClock) else 1.0
        self.pool = WorkerPool(workers, home.root, machines_dir=machines_dir)
        self.wake = Wakeup()
        self.runs: dict[str, Tracked] = {}
        self._deadlines: list[tuple[datetime, str]] = []
        self._scheduled: dict[str, datetime] = {}
        self._ready: dict[str, None] = {}  # runs that need an advance (insertion-ordered)
        self._timed_out: dict[str, int] = {}  # run -> seq of the step_started killed at its timeout
        self._dispatched: dict[str, datetime] = {}  # run -> when (clock) its current job was handed over
        self._mail: dict[str, deque[tuple[Claimed, Message, int]]] = {}
        self._answers: dict[str, int] = {}  # claimed key -> RunState.stands_at when it was checked
        self._sent: set[str] = set()  # claimed keys handed to a worker at least once: never unclaimed
        self._tickets_checked: set[tuple[str, int]] = set()  # (run, escalated seq) whose ticket was looked at
        self._later: list[tuple[float, str]] = []  # (monotonic, run): back-off until then
        self._not_before: dict[str, float] = {}
        self._incomplete: set[str] = set()
        self._stopping = threading.Event()
        self._once = False
        self.box: ClaimBox | None = None

    # --- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Run until `stop()` (or, with `once`, until nothing is due now). Returns 0."""
        self._once = once
        self.home.ensure()  # refuses symlinked inbox folders, before anything starts
        self.box = inbox.ClaimBox(self.home)
        self.pool.start()
        watcher = None if once else Watcher(self.home.inbox, self.home.runs, self.wake)
        if watcher:
            watcher.start()
        self.scan_runs()
        self._adopt()
        self.scan_inbox()
        counts: dict[str, int] = {}
        for tracked in self.runs.values():
            counts[tracked.status] = counts.get(tracked.status, 0) + 1
        log.info("supervising %d runs (%s) with %d workers", len(self.runs),
                 ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none", self.pool.size)
        next_rescan = time.monotonic() + self.rescan
        try:
            while not self._stopping.is_set():
                self.wake.clear()
                self._handle(self.pool.collect())
                if watcher:
                    changed, inbox_changed = watcher.take()
                    for run_id in changed:
                        self.refresh(run_id)
                    if inbox_changed or self._incomplete:
                        self.scan_inbox()
                    if time.monotonic() >= next_rescan:
                        if watcher.ensure_alive():
                            log.info("rescanning after a watcher restart")
                        self.scan_runs()
                        self._adopt()  # files claimed by a supervisor that died meanwhile
                        self.scan_inbox()
                        next_rescan = time.monotonic() + self.rescan
                self._refresh_busy()
                self._fire_due()
                self._kill_overdue()
                self._dispatch()
                if once and not self._pending_now():
                    break
                self._sleep(next_rescan)
        finally:
            self._shutdown(watcher)
        return 0

    def stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler or another thread)."""
        self._stopping.set()
        self.wake.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        # A read-lease probe (engine.supervise.inbox.is_complete) can earn a SIGIO whose default kills.
        signal.signal(signal.SIGIO, signal.SIG_IGN)

    def _sleep(self, next_rescan: float) -> None:
        timeout = min(self.tick, max(0.0, next_rescan - time.monotonic()))
        if self._deadlines:
            timeout = min(timeout, max(0.0, (self._deadlines[0][0] - self.clock.now()).total_seconds()))
        if self._later:
            timeout = min(timeout, max(0.0, self._later[0][0] - time.monotonic()))
        if self._incomplete:
            timeout = min(timeout, 0.1)
        if self._once and self.pool.busy():
            timeout = min(timeout, 0.05)
        wait(self.pool.waitables() + [self.wake], timeout)

    def _shutdown(self, watcher: Watcher | None) -> None:
        if watcher:
            watcher.stop()
        finished, abandoned = self.pool.stop(self.grace)
        self._handle(finished)
        for job in abandoned:
            log.warning("stopped during %s of run %s: it is stalled; the next start resumes it", job.kind, job.run_id)
        for queue in self._mail.values():
            for item, _, _ in queue:
                if item.key in self._sent:
                    # Maybe journaled under this key: it stays claimed, and the next start adopts
                    # it under the same key (delivery is idempotent on it). Never applied twice.
                    log.info("inbox file %s stays claimed; the next start finishes it", item.key)
                    continue
                try:  # never dispatched: nothing journaled, give it back
                    self.box.unclaim(item)
                except OSError as exc:
                    log.error("inbox file %s: %s; it stays claimed for the next start", item.key, exc)
        self._mail.clear()
        self.box.close()
        self.pool.close()
        self.wake.close()

    def _pending_now(self) -> bool:
        """Anything to do now or in flight? (`--once` stops when not.)"""
        if self.pool.busy():
            return True
        now = time.monotonic()
        waiting = [r for r in (*self._ready, *self._mail) if self._not_before.get(r, 0) <= now]
        return bool(waiting) or bool(self._deadlines and self._deadlines[0][0] <= self.clock.now())

    # --- knowing the runs -------------------------------------------------------------------

    def scan_runs(self) -> None:
        """Fold every journal that is new or grew since it was last read."""
        try:
            entries = list(os.scandir(self.home.runs))
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.name.endswith(".jsonl"):
                continue
            run_id = entry.name[: -len(".jsonl")]
            tracked = self.runs.get(run_id)
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue
            if tracked is None or size > tracked.offset:
                self.refresh(run_id)

    def refresh(self, run_id: str) -> Tracked | None:
        """Read a journal's new bytes, fold them in, and decide what the run needs.

        A journal that cannot be read or folded (whatever the exception) marks its run
        broken: logged, left alone, its inbox files rejected; the others go on.
        """
        try:
            path = self.home.store.path(run_id)
        except JournalError:
            return None
        tracked = self.runs.get(run_id) or Tracked(RunState())
        if tracked.broken:
            return tracked
        state, record = tracked.state, None
        was = (state.status, state.state)
        try:
            contents = read(path, offset=tracked.offset, last_seq=state.last_seq, last_hash=tracked.last_hash)
            for record in contents.records:
                state.apply(record)  # pinned definitions are shared (journal.records caches them)
        except FileNotFoundError:
            return self.runs.get(run_id)
        except Exception as exc:  # one bad journal must never take the supervisor down
            where = f"{path}:{record.seq}" if record is not None else str(path)
            if isinstance(exc, JournalError):
                tracked.broken = str(exc) if str(path) in str(exc) else f"{where}: {exc}"
            else:
                tracked.broken = f"{where}: cannot fold this record ({type(exc).__name__}: {exc}); run 'ratchet verify'"
            self.runs[run_id] = tracked
            log.error("%s; the run is left alone", tracked.broken)
            return tracked
        tracked.offset, tracked.last_hash = contents.end_offset, contents.last_hash
        if not state.run_id:
            return None  # created, run_started not yet durable: look again on its next write
        self.runs[run_id] = tracked
        if contents.records:
            _log_change(run_id, was, state)
            self._consider(run_id)
        return tracked

    def _consider(self, run_id: str) -> None:
        state = self.runs[run_id].state
        if state.status == MOVING and not self.pool.holding(run_id):
            self._ready[run_id] = None
        if state.status == "escalated" and state.escalation is not None and not self.pool.holding(run_id):
            self._check_ticket(run_id, state.escalation.seq)
        if state.deadline is not None and state.status in ("waiting", "retrying"):
            if self._scheduled.get(run_id) != state.deadline:
                self._scheduled[run_id] = state.deadline
                heapq.heappush(self._deadlines, (state.deadline, run_id))

    def _check_ticket(self, run_id: str, seq: int) -> None:
        """Once per escalation: a crash between `escalated` and its ticket left no ticket, or
        one whose on_escalate was not called. An advance repairs both (Runner._session)."""
        if (run_id, seq) in self._tickets_checked:
            return
        self._tickets_checked.add((run_id, seq))
        ticket = tickets.read_ticket(self.home.store, run_id)
        if ticket is None or ticket.get("seq") != seq or not ticket.get("notified"):
            log.info("run %s: escalation ticket missing or not notified; repairing it", run_id)
            self._ready[run_id] = None

    def _refresh_busy(self) -> None:
        # Step timeouts are judged on the journal's step_started: keep busy runs current.
        for worker in self.pool.busy():
            self.refresh(worker.job.run_id)

    def _fire_due(self) -> None:
        now = self.clock.now()
        while self._deadlines and self._deadlines[0][0] <= now:
            due, run_id = heapq.heappop(self._deadlines)
            if self._scheduled.get(run_id) != due:
                continue  # superseded by a later record
            del self._scheduled[run_id]
            state = self.runs[run_id].state
            if state.deadline == due and state.status in ("waiting", "retrying"):
                self._ready[run_id] = None
        mono = time.monotonic()
        while self._later and self._later[0][0] <= mono:
            heapq.heappop(self._later)

    def _kill_overdue(self) -> None:
        """Kill a worker whose own step passed its timeout, or whose job made no progress
        for `job_timeout` with no step of its own in flight (a hung on_escalate, say).

        A limit counts from the latest of the step's start (or the job's last record), the
        job's dispatch and the action's last heartbeat (`ctx.heartbeat()`): an action that
        heartbeats is alive, one that stops is killed a `timeout` after its last beat. A
        worker with unread messages (a heartbeat, its result) is judged after the next
        collect(). A step_started written before the job was handed over (by a process that
        died) is not the job's: the worker replays it first, so its age says nothing about it.
        """
        now = self.clock.now()
        for worker in self.pool.busy():
            job = worker.job
            tracked = self.runs.get(job.run_id)
            if tracked is None:
                continue
            state, step = tracked.state, tracked.state.in_flight
            dispatched = self._dispatched.get(job.run_id, now)
            beat = _age(now, worker.beat) if worker.beat is not None else float("inf")
            if step is not None and step.seq > job.last_seq:
                timeout = state.step_timeout
                if timeout is not None and min(_age(now, step.ts), _age(now, dispatched), beat) >= timeout:
                    if worker.conn.poll():
                        continue
                    self._timed_out[job.run_id] = step.seq
                    why = f"step '{step.state}' attempt {step.attempt} exceeded its timeout of {timeout:g}s"
                    if beat < _age(now, step.ts):
                        why += " since its last heartbeat"
                    self._handle([self.pool.kill(worker, why)])
                continue
            quiet = min(_age(now, dispatched), _age(now, state.updated, float("inf")), beat)
            if quiet >= self.job_timeout and not worker.conn.poll():
                why = f"{job.kind} made no progress for {self.job_timeout:g}s with no step of its own in flight"
                self._handle([self.pool.kill(worker, why)])
                self._back_off(job.run_id, None)  # it may hang again: do not spin on it

    # --- dispatching ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if not self.pool.idle():
            return
        now = time.monotonic()
        for run_id in list(dict.fromkeys([*self._ready, *self._mail])):
            if not self.pool.idle():
                return
            if self.pool.holding(run_id) or self._not_before.get(run_id, 0) > now:
                continue
            job = self._next_job(run_id)
            if job is not None:
                self._dispatched[run_id] = self.clock.now()
                if job.source_file:
                    self._sent.add(job.source_file)
                self.pool.submit(job)

    def _next_job(self, run_id: str) -> Job | None:
        tracked = self.runs.get(run_id)
        if tracked is None or tracked.broken:
            self._ready.pop(run_id, None)
            for item, _, _ in self._mail.pop(run_id, ()):
                self._refuse_damaged(item, tracked.broken if tracked else "it is gone")
            return None
        seq = tracked.state.last_seq
        if run_id in self._ready:
            self._ready.pop(run_id)
            timed_out = self._timed_out.pop(run_id, None)
            step = tracked.state.in_flight
            if step is None:
                reason = None
            elif step.seq == timed_out:
                reason = "timeout"  # the very step this supervisor killed at its limit
            else:
                reason = "worker died"  # nobody holds it (else: locked): its worker is gone
            return Job(run_id, "advance", abandoned=reason, last_seq=seq,
                       abandoned_seq=step.seq if step is not None else None)
        queue = self._mail.get(run_id)
        if queue:
            item, message, _ = queue[0]
            return Job(run_id, "deliver", message=message, source_file=item.key, last_seq=seq,
                       answers=self._answers.get(item.key))
        self._mail.pop(run_id, None)
        return None

    def _handle(self, results: list[Result]) -> None:
        for result in results:
            job, run_id = result.job, result.job.run_id
            self._dispatched.pop(run_id, None)
            before = job.last_seq
            tracked = self.refresh(run_id)
            if job.kind == "deliver":
                self._delivered(result)
            if result.outcome in ("died", "killed"):
                log.warning("run %s stalled (%s); replaying it", run_id, result.error)
                self._ready[run_id] = None
            elif result.outcome == "locked":
                if job.kind == "advance":
                    self._ready[run_id] = None
                self._back_off(run_id, LOCKED_BACKOFF)
            elif result.outcome == "error":
                log.error("%s of run %s failed: %s", job.kind, run_id, result.error)
                if job.kind == "advance":
                    self._ready[run_id] = None
                self._back_off(run_id, None)
            elif tracked is not None:
                tracked.failures = 0
                self._not_before.pop(run_id, None)
                if tracked.state.status == MOVING and tracked.state.last_seq == before and job.kind == "advance":
                    self._back_off(run_id, None)  # no progress: do not spin on it
                    self._ready[run_id] = None
                else:
                    self._consider(run_id)

    def _back_off(self, run_id: str, delay: float | None) -> None:
        tracked = self.runs.get(run_id)
        if delay is None:
            failures = tracked.failures + 1 if tracked else 1
            if tracked:
                tracked.failures = failures
            delay = min(MAX_BACKOFF, 0.5 * 2 ** (failures - 1))
        when = time.monotonic() + delay
        self._not_before[run_id] = when
        heapq.heappush(self._later, (when, run_id))

    # --- the inbox --------------------------------------------------------------------------

    def scan_inbox(self) -> None:
        """Claim and check every complete file in the inbox."""
        self._incomplete.clear()
        for name in inbox.pending(self.home):
            path = self.home.inbox / name
            if not inbox.is_complete(path, settle=0.0 if self._once else self.settle):
                self._incomplete.add(name)
                continue
            try:
                item = self.box.claim(name)
            except OSError as exc:  # e.g. EACCES, a name too long for the claimed name: skip it
                log.error("inbox file %s cannot be claimed: %s; it is left in place", name, exc)
                continue
            if item is not None:
                self._accept_file(item)

    def _adopt(self) -> None:
        """Take over (and handle) the files of claimers that died; delivery is idempotent."""
        try:
            items = self.box.adopt_orphans()
        except OSError as exc:
            log.error("adopting claimed files failed: %s; trying again at the next rescan", exc)
            return
        queued = {i.key for q in self._mail.values() for i, _, _ in q}
        for item in items:
            if item.key not in queued:
                self._accept_file(item)

    def _accept_file(self, item: Claimed) -> None:
        """Check a claimed file; queue it for its run, or reject it now."""
        try:
            self._check_file(item)
        except OSError as exc:  # one bad file (or a full disk) must not stop the supervisor
            log.error("inbox file %s: %s; it stays claimed and is handled again at the next start", item.key, exc)

    def _check_file(self, item: Claimed) -> None:
        try:
            message = inbox.read_message(item)
        except InvalidMessageError as exc:
            self._reject(item, exc.reason, exc.detail)
            return
        tracked = self.refresh(message.run)  # up to date: the file answers what the run is at now
        if tracked is None:
            self._reject(item, "unknown run", f"no run '{message.run}' in {self.home.runs}")
            return
        if tracked.broken:
            self._refuse_damaged(item, tracked.broken)
            return
        answer = tracked.state.inbox_files.get(item.key)
        if answer is not None:  # journaled before a crash: only the filing was missing
            self._file(item, *answer)
            return
        self._answers[item.key] = tracked.state.stands_at
        self._mail.setdefault(message.run, deque()).append((item, message, 0))

    def _delivered(self, result: Result) -> None:
        queue = self._mail.get(result.job.run_id)
        if not queue or queue[0][0].key != result.job.source_file:
            return
        item, message, tries = queue[0]
        if result.outcome == "ok":
            queue.popleft()
            self._file(item, bool(result.accepted), result.reason)
        elif result.outcome == "error":
            if tries + 1 >= DELIVERY_TRIES:
                queue.popleft()
                self._file(item, False, f"engine error: {result.error}")
            else:
                queue[0] = (item, message, tries + 1)
        if not queue:
            self._mail.pop(result.job.run_id, None)

    def _refuse_damaged(self, item: Claimed, error: str) -> None:
        try:
            self._reject(item, f"run's journal is damaged: {error}", "fix or remove the journal, then send again")
        except OSError as exc:
            log.error("inbox file %s: %s; it stays claimed and is filed again at the next start", item.key, exc)

    def _file(self, item: Claimed, accepted: bool, reason: str) -> None:
        self._answers.pop(item.key, None)
        try:
            if accepted:
                target = self.box.mark_done(item)
                self._sent.discard(item.key)
                log.info("applied %s", target.name)
            else:
                self._reject(item, "refused by the run", reason)
        except OSError as exc:
            log.error("inbox file %s: %s; it stays claimed and is filed again at the next start", item.key, exc)

    def _reject(self, item: Claimed, reason: str, detail: str) -> None:
        target = self.box.reject(item, reason, detail)
        self._sent.discard(item.key)
        log.warning("rejected %s: %s: %s", target.name, reason, detail)


def _log_change(run_id: str, was: tuple[str, str], state: RunState) -> None:
    """One line per run that stopped to wait for a person, or ended (what an operator follows)."""
    if (state.status, state.state) == was or not was[1]:
        return
    if state.status == "escalated" and state.escalation is not None:
        log.warning("run %s escalated in '%s': %s", run_id, state.state, state.escalation.reason)
    elif state.status == "waiting":
        log.info("run %s waits in '%s' for %s", run_id, state.state, "|".join(state.triggers))
    elif state.ended:
        log.info("run %s %s in '%s'", run_id, state.status, state.state)


def _age(now: datetime, then: datetime | str, bad: float = 0.0) -> float:
    """Seconds from `then` (a datetime or a journal ts) to `now`; `bad` for a ts that does not parse."""
    try:
        return (now - (parse_iso(then) if isinstance(then, str) else then)).total_seconds()
    except (ValueError, TypeError):
        return bad
