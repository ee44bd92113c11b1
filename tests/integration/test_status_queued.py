"""Messages sent and not applied yet, seen outside the inbox folder: `ratchet status` (table and
--json) and the Python API's snapshot, on the file store (PostgreSQL: test_pg_retention.py).

Real commands on a real home; time is the file clock. A queued message is an inbox file not
filed yet, claimed or not; one its run already journaled (a crash before filing) is not queued.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.home import Home
from engine.run.clock import FileClock
from engine.supervise import queued
from engine.supervise.status import status_rows

RATCHET = str(Path(sys.executable).parent / "ratchet")
REVIEW = """
name: review
version: 1
initial: review
states:
  review: {approvers: [alice, bob], timeout: 1d}
  done: {final: true}
  rejected: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
  - {trigger: reject, source: review, dest: rejected}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "review.yaml").write_text(REVIEW)
    FileClock(tmp_path / "clock").set(datetime(2026, 11, 27, 9, 41, tzinfo=UTC))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return clean | {"RATCHET_HOME": str(tmp_path / "home"), "RATCHET_CLOCK_FILE": str(tmp_path / "clock")}


def ok(env: dict[str, str], *args: str, **extra: str) -> str:
    out = subprocess.run([RATCHET, *args], env=env | extra, cwd=Path(env["RATCHET_HOME"]).parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def status(env: dict[str, str], run_id: str) -> dict:
    [row] = json.loads(ok(env, "status", run_id, "--json"))
    return row


def clock_at(env: dict[str, str], moment: datetime) -> None:
    FileClock(Path(env["RATCHET_CLOCK_FILE"])).set(moment)


def dropped(path: Path, moment: datetime) -> None:
    """The file's time is when it was written: set it, so that its age is the test's choice."""
    os.utime(path, (moment.timestamp(), moment.timestamp()))


def test_status_shows_queued_files_claimed_or_not_and_not_those_filed_or_journaled(env):
    home = Path(env["RATCHET_HOME"])
    t0 = datetime(2026, 11, 27, 9, 41, tzinfo=UTC)
    for run_id in ("r1", "r2", "r3"):
        ok(env, "start", "review.yaml", "--id", run_id)
    ok(env, "supervise", "--once")  # all three waiting
    approval = Path(ok(env, "approve", "r1", "--by", "alice").strip())
    dropped(approval, t0)
    # a YAML file dropped by hand, and one a supervisor claimed before it died (its claim box)
    by_hand = home / "inbox" / "reject-r1.yaml"
    by_hand.write_text("run: r1\ntrigger: reject\nby: bob\n")
    dropped(by_hand, t0 + timedelta(seconds=1))
    box = home / "inbox" / ".claimed" / "0000018f0000aaaa-4242"
    box.mkdir(parents=True)
    claimed = box / "0000018f0000aaaa-4242~cancel-r2.json"
    claimed.write_text('{"run": "r2", "cancel": true, "by": "carol", "reason": "dup"}')
    dropped(claimed, t0)
    (home / "inbox" / "junk.json").write_text("{not json")  # no run to show it under; the supervisor rejects it
    clock_at(env, t0 + timedelta(seconds=3))

    r1 = status(env, "r1")
    assert [(q["asks"], q["by"], q["where"], q["age_s"]) for q in r1["queued"]] == [
        ("approve", "alice", "inbox", 3.0), ("reject", "bob", "inbox", 2.0)]
    assert r1["queued"][0]["key"] == approval.name and r1["queued"][0]["since"].startswith("2026-11-27T09:41:00")
    assert [(q["asks"], q["by"], q["where"], q["key"]) for q in status(env, "r2")["queued"]] == [
        ("cancel", "carol", "claimed", claimed.name)]
    assert status(env, "r3")["queued"] == []
    table = ok(env, "status")
    line = next(text for text in table.splitlines() if text.startswith("r1 "))
    assert "approve|reject by alice,bob; queued 3 s: approve by alice (+1 more)" in line, table
    assert "queued 3 s: cancel by carol" in next(text for text in table.splitlines() if text.startswith("r2 "))

    ok(env, "supervise", "--once")  # r1's approval applied, bob's reject then refused as stale; r2 cancelled
    assert status(env, "r1")["queued"] == status(env, "r2")["queued"] == []
    assert "queued" not in ok(env, "status")
    assert sorted(p.name for p in (home / "inbox" / "done").iterdir()) == sorted([approval.name, "cancel-r2.json"])


def test_a_file_journaled_before_a_crash_is_not_shown_as_queued(env):
    """kill -9 of the supervisor after the delivery is journaled and before the file is filed:
    the file is still claimed, but its run answered it; status does not show it queued."""
    home = Path(env["RATCHET_HOME"])
    ok(env, "start", "review.yaml", "--id", "r1")
    ok(env, "supervise", "--once")
    ok(env, "approve", "r1", "--by", "alice")
    killed = subprocess.run([RATCHET, "supervise", "--once"], env=env | {"RATCHET_CRASH_AT": "lane_delivered:1"},
                            cwd=home.parent, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed
    assert len(list((home / "inbox" / ".claimed").rglob("*.json"))) == 1  # claimed, journaled, not filed
    row = status(env, "r1")
    assert row["state"] == "done" and row["queued"] == []


def test_the_python_api_snapshot_lists_the_queued_messages(env, monkeypatch):
    from engine import Ratchet

    monkeypatch.setenv("RATCHET_CLOCK_FILE", env["RATCHET_CLOCK_FILE"])  # the API's clock: the file clock

    ok(env, "start", "review.yaml", "--id", "r1")
    ok(env, "supervise", "--once")
    client = Ratchet(env["RATCHET_HOME"])
    sent = client.approve("r1", by="bob", comment="fine")
    assert sent.path is not None
    dropped(sent.path, datetime(2026, 11, 27, 9, 40, 30, tzinfo=UTC))
    [message] = client.get("r1").queued
    assert (message.asks, message.by, message.where, message.key) == ("approve", "bob", "inbox", sent.path.name)
    assert message.since == datetime(2026, 11, 27, 9, 40, 30, tzinfo=UTC) and message.age_s == 30.0
    assert [s.queued for s in client.list()] == [(message,)]
    ok(env, "supervise", "--once")
    assert client.get("r1").queued == ()


def test_one_listing_reads_each_inbox_file_once_whatever_the_number_of_runs(env, monkeypatch):
    """The inbox is indexed by run once per listing: 40 runs and 12 files are 12 reads, not 480."""
    from engine.run.runner import Runner

    home = Path(env["RATCHET_HOME"])
    runs = Home(home).ensure()
    runner = Runner(runs, clock=FileClock(Path(env["RATCHET_CLOCK_FILE"])))
    for n in range(40):  # in this process: 40 commands would take seconds
        runner.start(str(home.parent / "review.yaml"), {}, run_id=f"r{n:02d}", by="dana")
    for n in range(12):
        message = {"run": f"r{n % 3:02d}", "trigger": "approve", "by": "bob"}
        (home / "inbox" / f"m{n}.json").write_text(json.dumps(message))
    reads: list[str] = []
    real = queued._read
    monkeypatch.setattr(queued, "_read", lambda path, key, where: reads.append(key) or real(path, key, where))
    rows = status_rows(runs)
    assert len(rows) == 40 and len(reads) == 12
    assert [len(row.queued) for row in rows[:3]] == [4, 4, 4] and all(not row.queued for row in rows[3:])
