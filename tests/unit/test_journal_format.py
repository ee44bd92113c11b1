"""The journal's format version: format 1 costs no byte, a newer format is refused at line 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import JournalFormatError, ReplayError
from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.replay import fold
from engine.run.runner import Runner
from journal import FileStore, RunStarted, StepStarted, decode, encode, read, verify
from journal.records import FORMAT

from journal_builders import run_started

DEFINITION = {"name": "m", "version": 1, "initial": "s", "states": {"s": {"final": True}}, "transitions": []}
PROBLEM = "journal format 2 is newer than this Ratchet reads (1); upgrade Ratchet to read it"
NEWER = f"run 'r1': {PROBLEM}"


def started(**fields) -> RunStarted:
    return run_started(definition=DEFINITION, ts="2026-01-05T09:00:00.000000Z", **fields)


def write(home: Path, first: RunStarted) -> Path:
    store = FileStore(home)
    with store.writer("r1", create=True) as w:
        w.append_many([first, StepStarted(state="s", attempt=1, idempotency_key="r1/s/1",
                                          ts="2026-01-05T09:00:00.000000Z")])
    return store.path("r1")


def test_format_1_is_omitted_so_existing_journals_keep_their_bytes():
    assert FORMAT == 1
    line = encode(started())
    assert b"format" not in line and line == encode(started(format=1))
    assert decode(line).format == 1
    assert encode(started(format=2)).endswith(b',"format":2}')  # the last field on the line


def test_verify_refuses_a_newer_format_at_line_1(tmp_path: Path):
    path = write(tmp_path, started(format=2))
    result = verify(path)
    assert not result.ok and result.line == 1 and result.records == 0
    assert result.problem == PROBLEM and str(result) == f"{path}:1: {PROBLEM}"
    assert verify(write(tmp_path / "old", started())).ok


def test_replay_refuses_a_newer_format_with_one_clear_line(tmp_path: Path):
    path = write(tmp_path, started(format=2))
    with pytest.raises(JournalFormatError) as caught:
        fold(read(path).records)
    assert str(caught.value) == NEWER and "\n" not in str(caught.value)
    assert isinstance(caught.value, ReplayError)  # handled wherever a journal that does not fold is
    with pytest.raises(JournalFormatError):
        fold([]).apply(read(path).records[0])  # incremental folding refuses it too


def test_a_runner_refuses_to_advance_a_newer_journal_and_writes_nothing(tmp_path: Path):
    path = write(tmp_path / "home", started(format=2))
    before = path.read_bytes()
    runner = Runner(Home(tmp_path / "home").ensure(), clock=FakeClock())
    for call in (runner.advance, runner.read):
        with pytest.raises(JournalFormatError, match="upgrade Ratchet"):
            call("r1")
    assert path.read_bytes() == before
