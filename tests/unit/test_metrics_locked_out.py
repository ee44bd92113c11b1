"""`ratchet_jobs_locked_out_total`: a job that came back `locked` is counted, any other is not."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.run.clock import FakeClock
from engine.supervise.jobs import Job, Outcome, Result
from engine.supervise.metrics import Metrics


def counted(metrics: Metrics, name: str) -> float:
    text = generate_latest(metrics.registry).decode()
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_only_locked_jobs_are_counted_as_locked_out() -> None:
    metrics = Metrics(FakeClock())
    job = Job("r1", "advance")
    outcomes: tuple[Outcome, ...] = ("ok", "locked", "died", "locked", "error", "killed")
    for outcome in outcomes:
        metrics.job_done(Result(job, outcome))
    assert counted(metrics, "ratchet_jobs_locked_out_total") == 2
    assert counted(metrics, "ratchet_deadlines_claimed_total") == 0
