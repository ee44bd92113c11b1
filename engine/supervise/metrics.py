"""Prometheus metrics of one supervisor (`ratchet supervise --metrics-port 9464`).

Imported only when the flag is given (prometheus-client is the `metrics` extra). Where
each number comes from:

- **Runs, waits, escalations** (gauges): the supervisor's run table, which folds every
  record any process appends (engine.supervise.runs calls `run_changed`). Kept here as
  one small fact per run, so a scrape (in the HTTP server's thread) reads this object
  under its lock, never the supervisor's own table.
- **Steps, retries, escalations, step latency** (counters, histogram): derived from the
  journal records the run table reads anyway, not counted inside the workers. The journal
  is the truth, so a worker killed mid-step loses no count and none is counted twice, and
  no cross-process metric files (prometheus' multiprocess mode) are needed. Records
  already on disk when the supervisor starts are history: the first scan sets the
  gauges but counts nothing (`counting` starts after it), so a restart never replays
  old steps into a counter that Prometheus' `rate()` would read as a burst.
- **fsync latency**: the only figure the journal does not hold. Each worker times its own
  journal fsyncs (journal.writer.on_sync) and sends them back with the job's result.
- **Inbox files** and **worker restarts**: counted by the mailroom and by the loop as it
  files a file or handles a dead or killed worker; **jobs locked out** and **deadlines
  claimed** by the loop as a job comes back locked, and as it claims due timers.

Label values come from small sets (machine, state, status, outcome, a reason from a
fixed list): never a run id or a person (README, "Metrics").
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from engine.run.clock import Clock, parse_iso
from engine.run.replay import RunState
from engine.supervise.jobs import Result
from journal import Escalated, Record, RetryScheduled, StepAbandoned, StepFailed, StepSucceeded

STEP_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, 3600)  # actions: from a local call to an hour
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1)  # 130 µs is typical here
# A refusal by the run, named by the words of its reason (engine.run.delivery), first match wins.
REFUSALS = (("not verified:", "not verified"), ("replayed:", "replayed"), ("already approved", "same approver twice"),
            ("not_starter", "starter"), ("not a resolver", "not a resolver"), ("not an operator", "not an operator"),
            ("a skip cannot fire", "quorum"),  # who decided (engine.trust, engine.run.authority)
            ("stale:", "stale"), ("not an approver", "not an approver"), ("not waiting", "not waiting"),
            ("not escalated", "not escalated"), ("has ended", "run ended"), ("is not a trigger", "wrong trigger"),
            ("has no transition", "wrong trigger"), ("conditions not met", "conditions not met"),
            ("condition of", "condition failed"), ("engine error", "engine error"))


@dataclass(frozen=True)
class RunFacts:
    """What the gauges need of one run."""

    machine: str
    status: str
    waiting_since: datetime | None = None  # when its current wait began
    deadline: datetime | None = None  # that wait's deadline
    escalated_since: datetime | None = None
    escalation: str = ""  # the reason, while escalated


class Metrics(Collector):
    """The supervisor's metrics registry: fed by the loop's parts, read by scrapes."""

    def __init__(self, clock: Clock) -> None:
        # No `_created` series beside each counter: noise for alerts and dashboards.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.clock = clock
        self.registry = CollectorRegistry()
        self.counting = False  # the first scan is history: see the module's docstring
        self._lock = threading.Lock()
        self._runs: dict[str, RunFacts] = {}
        self._children: dict[tuple[Any, ...], Any] = {}  # labelled series, by (metric, labels): see _child
        r = self.registry
        self.steps = PromCounter("ratchet_steps", "Steps ended, by outcome (succeeded, failed, abandoned).",
                                 ["machine", "state", "outcome"], registry=r)
        self.retries = PromCounter("ratchet_retries", "Retries scheduled after a failed step.",
                                   ["machine", "state"], registry=r)
        self.escalations = PromCounter("ratchet_escalations", "Runs escalated to a person, by reason.",
                                       ["machine", "reason"], registry=r)
        self.step_seconds = Histogram("ratchet_step_duration_seconds", "How long an action ran (one attempt).",
                                      ["machine"], buckets=STEP_BUCKETS, registry=r)
        self.fsync_seconds = Histogram("ratchet_journal_fsync_seconds", "fdatasync of a journal batch, in workers.",
                                       buckets=FSYNC_BUCKETS, registry=r)
        self.inbox_files = PromCounter("ratchet_inbox_files", "Inbox files filed: accepted, or refused by reason.",
                                       ["result", "reason"], registry=r)
        self.worker_restarts = PromCounter("ratchet_worker_restarts", "Worker processes replaced (died or killed).",
                                           ["reason"], registry=r)
        self.locked_out = PromCounter("ratchet_jobs_locked_out", "Jobs that found their run held by another process "
                                      "(another supervisor, a `ratchet run`): a wasted round trip.", registry=r)
        self.deadlines_claimed = PromCounter("ratchet_deadlines_claimed", "Due deadlines and retries this supervisor "
                                             "claimed from a shared store (PostgreSQL) and advanced.", registry=r)
        r.register(self)

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve /metrics on host:port in a daemon thread; the address it is bound to."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        bound_host, bound_port = server.server_address[:2]
        return str(bound_host), int(bound_port)

    # --- fed by the run table, the mailroom and the loop (all in the loop's thread) ------------

    def run_changed(self, run_id: str, state: RunState | None, records: Sequence[Record], broken: str = "") -> None:
        """A run's journal grew (`records`) or was found damaged (`broken`)."""
        if broken or state is None:
            facts = RunFacts(self._runs[run_id].machine if run_id in self._runs else "", "damaged")
        else:
            facts = _facts(state)
        with self._lock:
            self._runs[run_id] = facts
        if self.counting:
            for record in records:
                self._count(facts.machine, record)

    def _count(self, machine: str, record: Record) -> None:
        if isinstance(record, (StepSucceeded, StepFailed)):
            outcome = "succeeded" if isinstance(record, StepSucceeded) else "failed"
            self._child(self.steps, machine, record.state, outcome).inc()
            if record.duration_ms is not None:
                self._child(self.step_seconds, machine).observe(record.duration_ms / 1000)
        elif isinstance(record, StepAbandoned):
            self._child(self.steps, machine, record.state, "abandoned").inc()
        elif isinstance(record, RetryScheduled):
            self._child(self.retries, machine, record.state).inc()
        elif isinstance(record, Escalated):
            self._child(self.escalations, machine, record.reason).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: `labels()` validates and locks on every call,
        and a busy supervisor counts thousands of records a second."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def inbox_filed(self, accepted: bool, reason: str = "", detail: str = "") -> None:
        """The mailroom filed a file in done/ (accepted) or rejected/ (`reason`, `detail`)."""
        if accepted:
            self.inbox_files.labels("accepted", "").inc()
        else:
            self.inbox_files.labels("refused", _refusal_kind(reason, detail)).inc()

    def job_done(self, result: Result) -> None:
        """A worker's job came back: its fsync times, and a restart if it died or was killed."""
        for seconds in result.fsync_s:
            self.fsync_seconds.observe(seconds)
        if result.outcome == "locked":
            self.locked_out.inc()
        if result.outcome in ("died", "killed"):
            self.worker_restarts.labels(result.outcome).inc()

    # --- read by a scrape (the HTTP server's thread) ------------------------------------------

    def collect(self) -> Iterator[Any]:
        with self._lock:
            facts = list(self._runs.values())
        now = self.clock.now()
        runs = GaugeMetricFamily("ratchet_runs", "Runs by status and machine.", labels=["status", "machine"])
        for (status, machine), n in sorted(Counter((f.status, f.machine) for f in facts).items()):
            runs.add_metric([status, machine], n)
        yield runs
        open_ = GaugeMetricFamily("ratchet_escalations_open", "Escalated runs waiting for a person.",
                                  labels=["machine", "reason"])
        for (machine, reason), n in sorted(Counter((f.machine, f.escalation) for f in facts
                                                   if f.escalated_since is not None).items()):
            open_.add_metric([machine, reason], n)
        yield open_
        yield _age("ratchet_oldest_escalation_age_seconds", "Age of the oldest open escalation (0: none).",
                   [f.escalated_since for f in facts], now)
        yield _age("ratchet_oldest_wait_age_seconds", "How long the longest current wait has lasted (0: none).",
                   [f.waiting_since for f in facts], now)
        yield _age("ratchet_wait_overdue_seconds", "How far the most overdue wait is past its deadline (0: none): "
                   "its timeout was not fired.", [f.deadline for f in facts], now)
        waiting = GaugeMetricFamily("ratchet_waits_overdue", "Waiting runs past their deadline.")
        waiting.add_metric([], sum(1 for f in facts if f.deadline is not None and f.deadline < now))
        yield waiting


def _facts(state: RunState) -> RunFacts:
    wait = state.waiting if state.status == "waiting" else None
    escalation = state.escalation if state.status == "escalated" else None
    return RunFacts(
        machine=state.machine, status=str(state.status),
        waiting_since=parse_iso(wait.ts) if wait is not None and wait.ts else None,
        deadline=state.deadline if wait is not None else None,
        escalated_since=parse_iso(escalation.ts) if escalation is not None and escalation.ts else None,
        escalation=escalation.reason if escalation is not None else "",
    )


def _age(name: str, help: str, times: list[datetime | None], now: datetime) -> GaugeMetricFamily:
    """A gauge of how long ago the earliest of `times` was (0 when there is none, or it is ahead)."""
    earliest = min((t for t in times if t is not None), default=None)
    gauge = GaugeMetricFamily(name, help)
    gauge.add_metric([], max(0.0, (now - earliest).total_seconds()) if earliest else 0.0)
    return gauge


def _refusal_kind(reason: str, detail: str) -> str:
    """A refused file's reason as a label from a small set: the mailroom's own reasons are
    short phrases already; a run's refusal is named by its words (REFUSALS)."""
    if reason.startswith("run's journal is damaged"):
        return "damaged journal"
    if reason != "refused by the run":
        return reason  # invalid JSON, file too large, unknown run, ... (engine.supervise.inbox, message)
    return next((kind for words, kind in REFUSALS if words in detail), "other")
