"""`ratchet supervise`: keep every run moving, with nobody watching.

One loop in one thread, over four parts: the run table (engine.supervise.runs: each
run folded incrementally from its journal), the agenda (engine.supervise.agenda:
deadlines and back-offs), the mailroom (engine.supervise.mailroom: the inbox's files)
and the step timeouts (engine.supervise.timeouts); on a store supervisors share, the
claims (engine.supervise.claims: due deadlines are claimed, so that one supervisor fires
each). The loop itself keeps the ready set
(runs that need an advance) and decides, from a run's new records, what it needs. It
never runs an action: each `advance` or `deliver` goes to a worker process
(engine.supervise.workers), at most one job per run at a time; a delivery to a run at
rest goes to the mail lane (engine.supervise.lane), so it never waits for a free worker. The journal's lock, taken
by the Runner inside the worker, is what guarantees a single writer per run even with
two supervisors on one home.

Stopping (SIGTERM/SIGINT): the loop ends and dispatches nothing more; busy workers finish
the step in hand and start no other, within `grace` seconds of the signal, or are killed
past it or at a second signal (engine.supervise.stopping).

Sleeping: until the next deadline or back-off end, a worker's answer or death, or a hint
from the watcher (engine.supervise.watcher), capped so that a `FileClock` change is
noticed; a rescan of `inbox/` every `rescan` seconds covers missed events there, and a
full rescan of the journals runs when the watch died or overflowed, else only every
JOURNAL_RESCAN seconds (idle cost must not grow with the number of runs).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING

from engine.home import Home
from engine.run import tickets
from engine.run.clock import Clock, FileClock, clock_from_env
from engine.run.replay import RunState
from engine.run.sealing import side_behind
from engine.run.status import RunStatus
from engine.supervise import stopping
from engine.supervise.agenda import Agenda
from engine.supervise.children import Family
from engine.supervise.claims import Claims
from engine.supervise.forkserver import start_forkserver, stop_forkserver
from engine.supervise.head_start import HeadStart, owes_advance
from engine.supervise.jobs import Job, Result
from engine.supervise.lane import MailLane
from engine.supervise.mailroom import Mailroom
from engine.supervise.runs import RunTable
from engine.supervise.stopping import Stops
from engine.supervise.timeouts import JOB_TIMEOUT, StepTimeouts
from engine.supervise.wakeup import Wakeup
from engine.supervise.workers import WorkerPool
from journal import JournalError

if TYPE_CHECKING:  # only with --metrics-port (prometheus-client is an extra)
    from engine.supervise.metrics import Metrics
    from engine.supervise.watcher import Watcher  # imported in run(): --once watches nothing

log = logging.getLogger("ratchet.supervisor")

MOVING = "running"  # the only status that needs a worker without a deadline or a message
LOCKED_BACKOFF = 0.5  # another process advances the run: look again soon
WARM_UP = 2.0  # seconds after start-up by which the inbox's models are imported, busy or not
# While the journals' watch is alive (and has not overflowed), a full rescan of runs/ is
# only a safety net: it costs a stat per journal, so idle CPU would grow with the runs.
JOURNAL_RESCAN = 300.0


@dataclass(frozen=True)
class Pacing:
    """How often the loop looks, and how long it waits for files and workers."""

    rescan: float  # seconds between rescans of inbox/ and watch checks (journals: JOURNAL_RESCAN)
    grace: float  # seconds busy workers get to finish at shutdown
    settle: float  # an inbox file unchanged this long is complete (where leases are unavailable)
    tick: float  # the longest sleep: a FileClock moves by a file write nobody signals


class Supervisor:
    """Drives every run under `home` until stopped (or, with `once`, until nothing is due)."""

    # Thirteen fields, over the ~8 a class should keep: nine are what it wires together (its
    # home and knobs, the pool, the mail lane and the wake-up it sleeps on, the four parts); its own state
    # is only the ready set, the tickets it looked at, the stop flag and the stop requests.
    def __init__(self, home: Home, *, workers: int = 2, clock: Clock | None = None,
                 machines_dir: Path = Path("machines"), rescan: float = 5.0, grace: float = 10.0,
                 settle: float = 1.0, job_timeout: float = JOB_TIMEOUT, metrics: Metrics | None = None,
                 head_start: HeadStart | None = None, message_retention: float | None = None) -> None:
        clock = clock or clock_from_env()
        self.home = home
        self.pacing = Pacing(rescan, grace, settle, tick=0.2 if isinstance(clock, FileClock) else 1.0)
        # A head start's pool and table hold the recovered runs' jobs already (engine.supervise.head_start).
        self.pool = WorkerPool(workers, home.root, machines_dir=machines_dir) if head_start is None else head_start.pool
        self.lane = MailLane(home.root, machines_dir=machines_dir)  # deliveries never wait for a free worker
        self.wake = Wakeup()
        self.runs = RunTable(home) if head_start is None else head_start.runs
        self.agenda = Agenda(clock)
        self.mailroom = Mailroom(home, self.runs, retention=message_retention)
        self.timeouts = StepTimeouts(clock, job_timeout=job_timeout)
        for job in head_start.jobs if head_start is not None else ():
            self.timeouts.handed_over(job.run_id)
        self.family = Family(home, self.runs)  # fan-out: children's ends to parents, unwanted children cancelled
        timers = home.store.timers  # a shared store: due deadlines are claimed, not taken from the agenda
        self.claims = (Claims(timers, clock, self.runs, every=rescan, held=home.store.held)
                       if timers is not None else None)
        self._ready: dict[str, None] = {}  # runs that need an advance (insertion-ordered)
        self._tickets_checked: set[tuple[str, int]] = set()  # (run, escalated seq) whose ticket was looked at
        self._stopping = threading.Event()
        self.locked_out = 0  # jobs that found their run locked by another process (logged at stop)
        self._cancel_locked: set[str] = set()  # runs whose cancel found them locked: it waits out the back-off
        self.stops = Stops()
        self.metrics = self.runs.observer = self.mailroom.observer = metrics  # fed by the runs and the mailroom

    # --- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Run until `stop()` (or, with `once`, until nothing is due now). Returns 0."""
        start_forkserver()  # before any thread or descriptor of ours (engine.supervise.forkserver)
        self.home.ensure()  # refuses symlinked inbox folders, before anything starts
        self.mailroom.open(settle=0.0 if once else self.pacing.settle)
        watcher = None
        if not once:  # watchdog is imported only now: `--once` (cron, a recovery) does without
            from engine.supervise.watcher import Watcher

            watcher = Watcher(self.home.inbox, self.home.store, self.wake)
            watcher.start()
        self.runs.scan()
        if self.claims is not None:
            self.claims.adopt()  # timers for resting runs that have none (imported, or lost to a crash)
        self._repair_seals()
        self._tidy_ticket_copies()
        self.mailroom.adopt()
        self.mailroom.scan()
        self.pool.start()
        self.lane.start()
        self._consider_changed()
        if self.metrics:
            self.metrics.counting = True  # what the first scan read is history, not news
        counts = self.runs.counts()
        log.info("supervising %d runs (%s) with %d workers", len(self.runs),
                 ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none", self.pool.size)
        # What reading an inbox file needs (pydantic models) is imported in a thread once the first
        # jobs are done, or after WARM_UP s: never on two busy cores with the steps of a recovery.
        cold, warm_by = not once, time.monotonic() + WARM_UP
        self.mailroom.expire(self.agenda.clock.now())  # settled message rows past their retention (PostgreSQL)
        next_rescan = time.monotonic() + self.pacing.rescan
        next_journal_rescan = time.monotonic() + max(self.pacing.rescan, JOURNAL_RESCAN)
        try:
            while not self._stopping.is_set():
                self.wake.clear()
                self._handle(self.pool.collect())
                self._handle(self.lane.collect())
                changed: Collection[str] = ()
                if watcher:
                    changed, inbox_changed = watcher.take()
                    for run_id in changed:
                        self.runs.refresh(run_id)
                    if inbox_changed or self.mailroom.waiting_for_writers:
                        self.mailroom.scan()
                    elif watcher.take_messages():
                        self.mailroom.take_posted()  # rows posted or settled (PostgreSQL), by any host
                    lost = watcher.take_overflow()
                    if lost or time.monotonic() >= next_rescan:
                        restarted = watcher.ensure_alive()
                        if restarted or lost:
                            log.info("rescanning after a watcher %s", "restart" if restarted else "overflow")
                        if restarted or lost or time.monotonic() >= next_journal_rescan:
                            self.runs.scan()
                            next_journal_rescan = time.monotonic() + max(self.pacing.rescan, JOURNAL_RESCAN)
                        self.mailroom.adopt()  # files claimed by a supervisor that died meanwhile
                        self._tidy_ticket_copies()
                        self.mailroom.scan()
                        self.mailroom.expire(self.agenda.clock.now())
                        next_rescan = time.monotonic() + self.pacing.rescan
                self._refresh_busy(read_now=changed, hinted=watcher is not None and watcher.alive())
                self._consider_changed()
                self._fire_due()
                self._kill_overdue()
                self._kill_cancelled()
                self._consider_changed()
                self._dispatch_mail()
                self._dispatch()
                if cold and (not self.pool.busy() or time.monotonic() >= warm_by):
                    cold = False
                    self.mailroom.warm_up()
                if once and not self._pending_now():
                    break
                self._sleep(next_rescan, once)
        finally:
            self._shutdown(watcher)
        if self.claims is not None:  # a clean stop (a database gone raised above: its claims run out)
            self.claims.release()  # claims not acted on: another supervisor may take them now
            log.info("%d due deadlines claimed from the store and fired here", self.claims.fired)
        if self.locked_out:
            log.info("%d jobs found their run locked by another process (another supervisor, or a "
                     "`ratchet run`) and waited for it", self.locked_out)
        return self.stops.exit_code()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask the loop to stop (safe from a signal handler or another thread): in-flight
        steps may finish within the grace. A second call stops at once."""
        self.stops.add(signum)
        self._stopping.set()
        self.wake.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _: self.stop(signum))
        # A read-lease probe (engine.supervise.inbox.is_complete) can earn a SIGIO whose default kills.
        signal.signal(signal.SIGIO, signal.SIG_IGN)

    def _sleep(self, next_rescan: float, once: bool) -> None:
        timeout = min(self.pacing.tick, max(0.0, next_rescan - time.monotonic()))
        due_in = self.agenda.next_wake()
        if due_in is not None:
            timeout = min(timeout, due_in)
        if self.mailroom.waiting_for_writers:
            timeout = min(timeout, 0.1)
        if once and (self.pool.busy() or self.lane.busy()):
            timeout = min(timeout, 0.05)
        wait(self.pool.waitables() + self.lane.waitables() + [self.wake], timeout)

    def _shutdown(self, watcher: Watcher | None) -> None:
        if watcher:
            watcher.stop()
        # A delivery in hand is a few appends; a second signal (stop at once) waits for none.
        self._handle(self.lane.stop(0.0 if self.stops.now else self.pacing.grace))
        drained = stopping.drain(self.pool, self.stops, self.pacing.grace, self.wake)
        self._handle(drained.finished)  # files delivered inbox files; refreshes the runs' rows
        stopping.report(drained, self.stops, self._where)
        self.mailroom.close()
        self.pool.close()
        self.lane.close()
        stop_forkserver()  # its workers are gone: the server too, reaped
        self.wake.close()

    def _where(self, run_id: str) -> str:
        """`r1 waiting in 'review'`, `r2 before 'charge'`: where a run stopped, for the log."""
        tracked = self.runs.get(run_id)
        if tracked is None or tracked.broken:
            return run_id
        rs = tracked.state
        if rs.status == MOVING and rs.in_flight is None:
            return f"{run_id} before '{rs.state}'"  # its next step starts at the next start
        return f"{run_id} {rs.status} in '{rs.state}'"

    def _pending_now(self) -> bool:
        """Anything to do now or in flight? (`--once` stops when not.)"""
        if self.pool.busy() or self.lane.busy():
            return True
        waiting = (r for r in (*self._ready, *self.mailroom.runs_with_mail()) if not self.agenda.held_back(r))
        return any(waiting) or self.agenda.deadline_passed()

    # --- what each run needs ----------------------------------------------------------------

    def _consider_changed(self) -> None:
        """Look at every run that got new records (from any refresh, the mailroom's included)."""
        for run_id in self.runs.take_changed():
            self._consider(run_id)

    def _consider(self, run_id: str) -> None:
        state = self.runs[run_id].state
        owed = owes_advance(state)  # moving, or an ended run owes its on_cancel (cut off)
        if owed and not self._held(run_id):
            self._ready[run_id] = None
        if state.status == "escalated" and state.escalation is not None and not self._held(run_id):
            self._check_ticket(run_id, state.escalation.seq)
        if state.deadline is not None and state.status in ("waiting", "retrying"):
            self.agenda.schedule(run_id, state.deadline)
        for parent in self.family.consider(run_id, state):
            if not self.pool.holding(parent):
                self._ready[parent] = None

    def _check_ticket(self, run_id: str, seq: int) -> None:
        """Once per escalation: a crash between `escalated` and its ticket left no ticket, or
        one whose on_escalate was not called. An advance repairs both (Runner._session)."""
        if (run_id, seq) in self._tickets_checked:
            return
        if self.claims is not None and self.claims.defer_ticket_check(run_id, seq):
            return  # another supervisor's worker escalated it and is writing its ticket: look once it is done
        self._tickets_checked.add((run_id, seq))
        ticket = tickets.read_ticket(self.home.store, run_id)
        if ticket is None or ticket.get("seq") != seq or not ticket.get("notified"):
            log.info("run %s: escalation ticket missing or not notified; repairing it", run_id)
            self._ready[run_id] = None

    def _repair_seals(self) -> None:
        """At start-up: an ended run killed between its last seal and the seal's side file is
        advanced once, which publishes it (engine.run.sealing.side_behind)."""
        for run_id in self.runs.ids():
            tracked = self.runs[run_id]
            if not tracked.broken and side_behind(self.home, tracked.state):
                log.info("run %s: its latest seal is not kept outside its journal; repairing it", run_id)
                self._ready[run_id] = None

    def _tidy_ticket_copies(self) -> None:
        try:
            for run_id in tickets.tidy_copies(self.home.store):
                log.info("run %s: its escalation was resolved on another host; removed this host's ticket copy",
                         run_id)
        except JournalError as exc:  # the database is away: the copies wait for the next rescan
            log.warning("%s", exc)

    def _refresh_busy(self, read_now: Collection[str] = (), hinted: bool = False) -> None:
        # Step timeouts are judged on the journal's step_started: keep busy runs current. With a
        # live watch every append hints its run, which is read then (`read_now`), so nothing is
        # read here; a run is read again before its worker is killed (a hint may be a moment late).
        if hinted:
            return
        for worker in self.pool.busy():
            if worker.current.run_id not in read_now:
                self.runs.refresh(worker.current.run_id)

    def _fire_due(self) -> None:
        if self.claims is not None:  # a shared store: advance only the due runs this supervisor claims
            # Claim in batches: once fewer runs are ready than there are workers (those backing off
            # aside), what the free workers can take now and twice the pool queued, so that a worker
            # that finishes finds its next run without waiting for a claim.
            ready_now = sum(1 for r in self._ready if not self._held(r) and not self.agenda.held_back(r))
            room = len(self.pool.idle()) + 2 * self.pool.size - ready_now if ready_now < self.pool.size else 0
            claimed = self.claims.take(self.agenda.due(), room)
            for run_id in claimed:
                self._ready[run_id] = None
            if self.metrics and claimed:
                self.metrics.deadlines_claimed.inc(len(claimed))
            for run_id, seq in self.claims.ticket_checks_due():  # escalations their holder has had time to finish
                tracked = self.runs.get(run_id)
                escalation = tracked.state.escalation if tracked is not None else None
                if (escalation is not None and escalation.seq == seq and tracked is not None
                        and tracked.state.status == "escalated" and not self._held(run_id)):
                    self._check_ticket(run_id, seq)  # (our own job's end checks it anyway)
            return
        for run_id, deadline in self.agenda.due():
            state = self.runs[run_id].state
            if state.deadline == deadline and state.status in ("waiting", "retrying"):
                self._ready[run_id] = None

    def _kill_overdue(self) -> None:
        """Kill a worker whose job is overdue (engine.supervise.timeouts says when). A worker
        with unread messages (a heartbeat, its result) is judged after the next collect()."""
        for pool in (self.pool, self.lane.pool):
            for worker, overdue in self.timeouts.overdue(pool.busy(), self.runs):
                if worker.conn.poll():
                    continue
                run_id = worker.current.run_id
                tracked = self.runs.refresh(run_id)  # judged again on the journal as it is now
                if tracked is not None:
                    verdict = self.timeouts.judge(worker.current, tracked.state, worker.beat,
                                                  self.timeouts.clock.now())
                    if verdict is None:
                        continue  # it moved on: its hint had not been read yet
                    overdue = verdict
                self.timeouts.killed(run_id, overdue)
                self._handle([pool.kill(worker, overdue.why)])
                if overdue.step_seq is None:
                    self.agenda.back_off(run_id)  # it may hang again: do not spin on it

    def _kill_cancelled(self) -> None:
        """A cancel is queued for a run a worker holds (mid-step, say): kill that worker
        (SIGKILL, as for a step past its timeout), so the cancel is delivered next, to a
        run nobody advances, and the step it cuts off is named in `cancelled`."""
        for run_id in self.mailroom.cancelling():
            worker = self.pool.holding(run_id)
            if worker is None or worker.conn.poll():  # a result may be waiting: judged after collect()
                continue
            job = worker.current
            if job.kind == "deliver" and job.message is not None and (job.message.cancel
                                                                     or job.message.resolve == "abort"):
                continue  # the cancel itself (or an abort; and its on_cancel) is what the worker is doing
            tracked = self.runs.refresh(run_id) or self.runs.get(run_id)  # as it is now, before a kill
            if tracked is not None and tracked.state.ended:
                continue  # ended already: an owed on_cancel is running, never cut it
            if tracked is not None and _resting(tracked.state):
                # Its job journaled `waiting` (or `retrying`) and its result is on the way: nothing is left
                # to cut off. Should it move on (a deadline passed), the next loop sees a step and kills.
                continue

            result = self.pool.kill(worker, "a cancel is waiting for its run")
            self.timeouts.finished(run_id)
            if job.kind == "deliver":
                self.mailroom.delivered(result)  # killed: the file stays queued, for after the cancel
            self._ready[run_id] = None  # should the cancel be refused, the run is replayed

    # --- dispatching ------------------------------------------------------------------------

    def _held(self, run_id: str) -> bool:
        """Does a worker (of the pool or the mail lane) hold the run? One job per run at a time."""
        return self.pool.holding(run_id) is not None or self.lane.holding(run_id) is not None

    def _dispatch_mail(self) -> None:
        """Deliveries to runs at rest go to the mail lane (engine.supervise.lane), whatever the
        pool is doing; the steps that follow are dispatched to the pool as usual."""
        if self._stopping.is_set():
            return
        for job in self.lane.dispatch(self.mailroom, self.runs, held=self._held, held_back=self.agenda.held_back):
            self.timeouts.handed_over(job.run_id)

    def _dispatch(self) -> None:
        if not self.pool.idle():
            return
        cancelling = self.mailroom.cancelling()  # before anything else: they end what they find
        self._cancel_locked.intersection_update(cancelling)  # delivered elsewhere meanwhile: forgotten (bounded)
        ready = _spread(self._ready) if self.locked_out else self._ready  # another process takes runs too
        for run_id in list(dict.fromkeys([*cancelling, *ready, *self.mailroom.runs_with_mail()])):
            if not self.pool.idle() or self._stopping.is_set():  # a stop dispatches nothing more
                return
            cancel = run_id in cancelling
            if self._held(run_id) or (self.agenda.held_back(run_id) and (not cancel or run_id in self._cancel_locked)):
                continue
            self._cancel_locked.discard(run_id)
            job = self.mailroom.next_delivery(run_id) if cancel else self._next_job(run_id)  # a cancel first
            if job is not None:
                self.timeouts.handed_over(run_id)
                self.pool.submit(job)

    def _next_job(self, run_id: str) -> Job | None:
        """An advance if the run is ready, else the delivery of its oldest inbox file."""
        if run_id in self._ready:
            del self._ready[run_id]
            tracked = self.runs.get(run_id)
            if tracked is not None and not tracked.broken:
                job = self.timeouts.advance_job(run_id, tracked.state)
                hints = self.family.hints(run_id, tracked.state.last_seq)
                return replace(job, children=hints) if hints else job
        return self.mailroom.next_delivery(run_id)  # a gone or damaged run: its files are refused

    def _handle(self, results: list[Result]) -> None:
        for result in results:
            job, run_id = result.job, result.job.run_id
            self.timeouts.finished(run_id)
            if self.metrics:
                self.metrics.job_done(result)
            before = job.last_seq
            tracked = self.runs.refresh(run_id)
            if job.kind == "deliver":
                self.mailroom.delivered(result)
            if result.outcome in ("died", "killed"):
                log.warning("run %s stalled (%s); replaying it", run_id, result.error)
                self._ready[run_id] = None
            elif result.outcome == "locked":
                # Another process (a second supervisor, a `ratchet run`) advances the run: normal
                # when several share a home, so only counted, and said at debug level.
                self.locked_out += 1
                log.debug("run %s is locked by another process (its %s waits %.1fs)", run_id, job.kind,
                          LOCKED_BACKOFF)
                if job.kind == "advance":
                    self._ready[run_id] = None
                elif job.message is not None and job.message.cancel:
                    self._cancel_locked.add(run_id)  # a cancel skips back-offs, not this one
                self.agenda.back_off(run_id, LOCKED_BACKOFF)
            elif result.outcome == "error":
                log.error("%s of run %s failed: %s", job.kind, run_id, result.error)
                if job.kind == "advance":
                    self._ready[run_id] = None
                self.agenda.back_off(run_id)
            elif tracked is not None:
                self.agenda.progressed(run_id)
                if tracked.state.status == MOVING and tracked.state.last_seq == before and job.kind == "advance":
                    self.agenda.back_off(run_id)  # no progress: do not spin on it
                    self._ready[run_id] = None
                else:
                    self._consider(run_id)



SPREAD = 64  # the oldest ready runs, taken in a random order: see _spread


def _spread(ready: dict[str, None]) -> list[str]:
    """The ready runs in dispatch order once another process was found advancing runs here:
    the oldest SPREAD from a random place among them, then the rest as they came. Supervisors
    sharing a store all see the same runs become ready at once (a start-up, a burst): taken in
    the same order, each would mostly find the run it picked locked by another (a wasted job,
    and a back-off). Within the window every run has its chance each turn, and the window
    moves on as runs are taken: none waits for ever. Alone, a supervisor keeps their order."""
    runs = list(ready)
    if len(runs) < 2:
        return runs
    head, rest = runs[:SPREAD], runs[SPREAD:]
    turn = random.randrange(len(head))
    return head[turn:] + head[:turn] + rest


def _resting(state: RunState) -> bool:
    """Has the run come to rest, with no code of its own in flight? (Not `escalated`: its
    worker may be calling on_escalate, which a cancel cuts off.)"""
    return state.in_flight is None and state.status in (RunStatus.WAITING, RunStatus.RETRYING)
