"""The mailroom: an inbox file from its drop to done/ or rejected/, on real files.

The worker's side is played by the `Result`s a worker sends back; no worker runs here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.home import Home
from engine.supervise import inbox
from engine.supervise.jobs import Result
from engine.supervise.mailroom import DELIVERY_TRIES, Mailroom
from engine.supervise.runs import RunTable
from journal import TriggerReceived, Waiting

from damage import cut_at
from journal_builders import run_started

DEFINITION = {"initial": "review", "states": {"review": {}}}


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home").ensure()
    with home.store.writer("r1", create=True) as w:
        w.append_many([run_started("r1", definition=DEFINITION, definition_hash="sha256:x"),
                       Waiting(state="review", triggers=["approve"])])
    return home


@pytest.fixture
def mailroom(home):
    room = Mailroom(home, RunTable(home))
    room.open(settle=0.0)
    yield room
    room.close()


def drop(home: Home, name: str, run: str = "r1", trigger: str = "approve") -> None:
    tmp = home.inbox_tmp / name
    tmp.write_text(json.dumps({"run": run, "trigger": trigger, "by": "alice"}))
    os.rename(tmp, home.inbox / name)


def test_a_file_is_queued_for_its_run_delivered_and_filed_in_done(home, mailroom):
    drop(home, "a.json")
    mailroom.scan()
    assert inbox.pending(home) == [] and mailroom.runs_with_mail() == ["r1"]
    job = mailroom.next_delivery("r1")
    assert (job.kind, job.run_id, job.message.trigger, job.answers, job.last_seq) == ("deliver", "r1", "approve", 2, 2)
    assert job.source_file.endswith("~a.json")
    mailroom.delivered(Result(job, "ok", accepted=True, reason="accepted"))
    assert os.listdir(home.inbox_done) == ["a.json"] and mailroom.runs_with_mail() == []
    assert mailroom.next_delivery("r1") is None


def test_invalid_files_and_files_for_unknown_runs_are_rejected_saying_why(home, mailroom):
    (home.inbox / "bad.json").write_text("{not json")
    drop(home, "ghost.json", run="nobody")
    mailroom.scan()
    assert mailroom.runs_with_mail() == []
    assert sorted(os.listdir(home.inbox_rejected)) == ["bad.json", "bad.json.error.txt", "ghost.json",
                                                       "ghost.json.error.txt"]
    assert (home.inbox_rejected / "ghost.json.error.txt").read_text().startswith("unknown run")


def test_a_refused_delivery_is_rejected_and_an_engine_error_is_tried_again(home, mailroom):
    drop(home, "a-no.json")
    drop(home, "b-flaky.json")
    mailroom.scan()
    job = mailroom.next_delivery("r1")
    mailroom.delivered(Result(job, "ok", accepted=False, reason="alice may not"))
    assert "alice may not" in (home.inbox_rejected / "a-no.json.error.txt").read_text()
    for attempt in range(1, DELIVERY_TRIES + 1):
        job = mailroom.next_delivery("r1")
        assert job.source_file.endswith("~b-flaky.json")
        mailroom.delivered(Result(job, "died"))  # not an answer: the same file comes again
        mailroom.delivered(Result(mailroom.next_delivery("r1"), "error", error="EngineError: boom"))
        assert ("b-flaky.json" in os.listdir(home.inbox_rejected)) == (attempt == DELIVERY_TRIES)
    assert "engine error: EngineError: boom" in (home.inbox_rejected / "b-flaky.json.error.txt").read_text()


def test_files_of_a_damaged_run_are_refused(home, mailroom):
    drop(home, "a.json")
    mailroom.scan()
    path = home.store.path("r1")
    cut_at(path, 10)  # the journal was cut since it was read
    mailroom.runs.refresh("r1")
    assert mailroom.next_delivery("r1") is None
    assert "run's journal is damaged" in (home.inbox_rejected / "a.json.error.txt").read_text()


def test_at_close_a_file_never_handed_over_goes_back_and_one_handed_over_stays_claimed(home):
    runs = RunTable(home)
    with home.store.writer("r2", create=True) as w:
        w.append_many([run_started("r2", definition=DEFINITION, definition_hash="sha256:x"),
                       Waiting(state="review", triggers=["approve"])])
    room = Mailroom(home, runs)
    room.open(settle=0.0)
    drop(home, "sent.json")
    drop(home, "kept.json", run="r2")
    room.scan()
    sent = room.next_delivery("r1").source_file  # handed over; its worker never answered
    room.close()
    assert inbox.pending(home) == ["kept.json"]
    (box,) = os.listdir(home.inbox_claimed)
    assert os.listdir(home.inbox_claimed / box) == [sent]

    again = Mailroom(home, RunTable(home))  # the next start adopts it under the same key
    again.open(settle=0.0)
    again.adopt()
    assert again.next_delivery("r1").source_file == sent
    again.close()


def test_an_adopted_file_already_journaled_is_only_filed(home):
    box = inbox.ClaimBox(home)  # a claimer that journaled the file, then died before filing it
    drop(home, "a.json")
    key = box.claim("a.json").key
    with home.store.writer("r1") as w:
        w.append(TriggerReceived(trigger="approve", state="review", by="alice", source_file=key))
    box.close()  # its lock is released, as a dead process's is

    room = Mailroom(home, RunTable(home))
    room.open(settle=0.0)
    room.adopt()
    assert room.runs_with_mail() == [] and os.listdir(home.inbox_done) == ["a.json"]
    room.close()
