"""`ratchet supervise --metrics-port`: a real supervisor, scraped over HTTP during a scenario
(approvals, a refused sender, a bad file, a retry, a hung worker killed, escalations), its
values checked against what happened, on the test's file clock."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor_harness import Env
from waiting import wait_for

pytestmark = pytest.mark.slow  # about 6 s: a hung step, two clock moves, three scrapes


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape_until(port: int, name: str, **labels: str) -> dict:
    """A scrape once it has the sample `name{labels}` (the supervisor files and folds asynchronously)."""
    def has_it() -> dict | None:
        samples = scrape(port)
        return samples if value(samples, name, **labels) is not None else None
    return wait_for(has_it, what=f"{name}{labels} in the metrics")


def metrics_port(env: Env) -> int:
    found = wait_for(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", env.log()),
                     what="the metrics address in the log")
    return int(found.group(1))


def journaled(env: Env, *run_ids: str) -> list[dict]:
    return [r for run_id in run_ids for r in env.records(run_id)]


def test_metrics_follow_a_scenario(env: Env) -> None:
    runs = ("m-ok", "m-esc", "m-flaky", "m-hang")
    env.start("m-ok")
    env.start("m-esc")
    env.start("m-flaky", fail_in="prepare")  # attempt 1 fails: a retry
    env.start("m-hang", hang="prepare")  # attempt 1 hangs past its 2s timeout: its worker is killed
    env.supervise("--metrics-port", "0")
    port = metrics_port(env)

    env.wait_status("m-ok", "waiting")
    env.wait_status("m-flaky", "retrying")
    wait_for(env.started_marker("m-hang").exists, what="the hanging step to start")
    env.clock.advance(3)  # the retry is due; the hung step is past its timeout
    env.wait_status("m-flaky", "waiting")
    env.wait_status("m-hang", "retrying")
    env.clock.advance(2)  # the hung run's retry is due
    env.wait_status("m-hang", "waiting")

    env.send("m-ok", "approve", by="alice")
    env.send("m-esc", "approve", by="mallory")  # not an approver: refused
    junk = env.home.inbox_tmp / "junk.json"
    junk.write_text("{not json")
    junk.rename(env.home.inbox / "junk.json")
    env.wait_status("m-ok", "finished", "done")
    scrape_until(port, "ratchet_inbox_files_total", result="refused", reason="invalid JSON")
    scrape_until(port, "ratchet_inbox_files_total", result="refused", reason="not an approver")
    m = scrape_until(port, "ratchet_inbox_files_total", result="accepted", reason="")  # filed after its records

    assert value(m, "ratchet_runs", status="waiting", machine="approval") == 3
    assert value(m, "ratchet_runs", status="finished", machine="approval") == 1
    assert value(m, "ratchet_inbox_files_total", result="accepted", reason="") == 1
    assert value(m, "ratchet_inbox_files_total", result="refused", reason="not an approver") == 1
    assert value(m, "ratchet_worker_restarts_total", reason="killed") == 1
    assert value(m, "ratchet_retries_total", machine="approval", state="prepare") == 2  # flaky and hung
    records = journaled(env, *runs)
    ends = {kind: [r for r in records if r["type"] == f"step_{kind}"] for kind in ("succeeded", "failed", "abandoned")}
    assert len(ends["succeeded"]) == 5 and len(ends["failed"]) + len(ends["abandoned"]) == 2
    for outcome, found in ends.items():
        for state in ("prepare", "send"):
            expected = sum(1 for r in found if r["state"] == state)
            assert (value(m, "ratchet_steps_total", machine="approval", state=state, outcome=outcome) or 0) == expected
    timed = [r["duration_ms"] for r in records if r["type"] in ("step_succeeded", "step_failed") and "duration_ms" in r]
    assert value(m, "ratchet_step_duration_seconds_count", machine="approval") == len(timed)
    assert value(m, "ratchet_step_duration_seconds_sum", machine="approval") == pytest.approx(sum(timed) / 1000)
    assert value(m, "ratchet_journal_fsync_seconds_count") >= 8  # at least one per step batch, timed in workers
    assert 0 < value(m, "ratchet_journal_fsync_seconds_sum") < 60
    assert value(m, "ratchet_oldest_wait_age_seconds") == 5.0  # m-esc has waited since the start, 5 s on the clock
    assert value(m, "ratchet_wait_overdue_seconds") == 0 and value(m, "ratchet_waits_overdue") == 0
    assert value(m, "ratchet_oldest_escalation_age_seconds") == 0

    env.clock.advance(86400 + 10)  # every 1d wait expires; no `timeout` transition: three escalations
    for run_id in ("m-esc", "m-flaky", "m-hang"):
        env.wait_status(run_id, "escalated")
    env.clock.advance(3600)
    m = scrape(port)
    assert value(m, "ratchet_escalations_open", machine="approval", reason="timeout") == 3
    assert value(m, "ratchet_escalations_total", machine="approval", reason="timeout") == 3
    assert value(m, "ratchet_runs", status="escalated", machine="approval") == 3
    assert value(m, "ratchet_runs", status="waiting", machine="approval") is None
    assert value(m, "ratchet_oldest_escalation_age_seconds") == 3600.0  # open for an hour: the README's alert
    assert value(m, "ratchet_oldest_wait_age_seconds") == 0


def test_history_is_not_counted_again_after_a_restart(env: Env) -> None:
    env.start("h-1")
    assert env.once().returncode == 0  # history: a step and a wait, before the metrics supervisor starts
    env.supervise("--metrics-port", "0")
    port = metrics_port(env)
    m = scrape_until(port, "ratchet_runs", status="waiting", machine="approval")  # the first scan is done
    assert value(m, "ratchet_steps_total", machine="approval", state="prepare", outcome="succeeded") is None
    env.send("h-1", "approve", by="alice")
    env.wait_status("h-1", "finished")
    m = scrape_until(port, "ratchet_runs", status="finished", machine="approval")
    assert value(m, "ratchet_steps_total", machine="approval", state="send", outcome="succeeded") == 1
    assert value(m, "ratchet_steps_total", machine="approval", state="prepare", outcome="succeeded") is None


def test_metrics_port_in_use_is_one_line(env: Env) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = env.cli("supervise", "--metrics-port", str(taken.getsockname()[1]))
    err = out.stderr.decode()
    assert out.returncode == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("ratchet: error: --metrics-port "), err  # after the home's line
    assert "cannot serve on 127.0.0.1" in err



def test_an_overdue_wait_is_measured(env: Env) -> None:
    """No supervisor fires the timeout (none runs): the wait's lateness is what the README's alert reads."""
    from prometheus_client import generate_latest

    from engine.run.replay import fold
    from engine.supervise.metrics import Metrics

    env.start("o-1")
    assert env.once().returncode == 0  # it waits in review, until the clock's start + 1d
    metrics = Metrics(env.clock)
    metrics.run_changed("o-1", fold(env.home.store.read("o-1").records), [])
    env.clock.advance(86400 + 7200)
    m = {(s.name, tuple(sorted(s.labels.items()))): s.value
         for f in text_string_to_metric_families(generate_latest(metrics.registry).decode()) for s in f.samples}
    assert value(m, "ratchet_waits_overdue") == 1
    assert value(m, "ratchet_wait_overdue_seconds") == 7200.0
    assert value(m, "ratchet_oldest_wait_age_seconds") == 86400 + 7200
    assert value(m, "ratchet_runs", status="waiting", machine="approval") == 1
    assert not any(name.endswith("_created") for name, _ in m)


def test_without_prometheus_client_the_flag_says_how_to_install_it(env: Env) -> None:
    blocked = "import sys; sys.modules['prometheus_client'] = None; from engine.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", blocked, "supervise", "--metrics-port", "0"], cwd=env.dir,
                         env=env.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "--metrics-port needs prometheus-client" in out.stderr
    assert "pip install 'ratchet[metrics]'" in out.stderr.strip().splitlines()[-1]


def test_the_cli_and_a_plain_supervisor_never_import_prometheus_client() -> None:
    code = ("import sys; from engine.cli import main; from engine.supervise import supervisor; "
            "assert 'prometheus_client' not in sys.modules and 'engine.supervise.metrics' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
