"""The single writer: fills seq/prev/ts, chains lines, holds the run's lock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from journal import (
    GENESIS,
    FileStore,
    JournalError,
    JournalLockedError,
    StepStarted,
    Transition,
    line_hash,
    verify,
)

from journal_builders import run_started


def test_append_fills_seq_prev_and_ts_and_chains_lines(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with store.writer("r1", create=True) as w:
        first = w.append(run_started())
        second = w.append(StepStarted(state="a", attempt=1, idempotency_key="r1/a/1"))
        given = w.append(Transition(trigger="ok", source="a", dest="b", ts="2026-11-27T09:41:03.000000Z"))
    lines = store.path("r1").read_bytes().splitlines()
    assert (first.seq, second.seq, given.seq) == (1, 2, 3)
    assert first.prev == GENESIS and second.prev == line_hash(lines[0]) and given.prev == line_hash(lines[1])
    assert first.ts.endswith("Z") and given.ts == "2026-11-27T09:41:03.000000Z"  # the engine's clock wins
    assert [json.loads(line)["type"] for line in lines] == ["run_started", "step_started", "transition"]


def test_a_reopened_writer_continues_the_chain(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with store.writer("r1", create=True) as w:
        w.append(run_started())
    with store.writer("r1") as w:
        assert w.last_seq == 1
        w.append_many([StepStarted(state="a", attempt=1, idempotency_key="k"),
                       Transition(trigger="ok", source="a", dest="b")])
        w.append_many([])  # an empty batch writes nothing (not even a blank line)
    assert verify(store.path("r1")).records == 3 and verify(store.path("r1")).ok


def test_create_of_an_existing_run_opens_it_and_a_missing_run_is_an_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with store.writer("r1", create=True) as w:
        assert w.created
        w.append(run_started())
    with store.writer("r1", create=True) as w:
        assert not w.created and w.last_seq == 1
    with pytest.raises(JournalError, match="no journal for run 'r2'"):
        store.writer("r2")


def test_second_writer_in_the_same_process_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    first = store.writer("r1", create=True)
    with pytest.raises(JournalLockedError, match="run 'r1' is already being advanced"):
        store.writer("r1")
    first.close()
    store.writer("r1").close()


def test_a_lock_held_by_another_process_refuses_this_one(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.writer("r1", create=True).close()
    code = ("import sys\nfrom journal import FileStore, JournalLockedError\ntry:\n"
            "    FileStore(sys.argv[1]).writer('r1')\nexcept JournalLockedError:\n    print('locked')")
    with store.writer("r1"):
        out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "locked"


def test_run_ids_lists_only_valid_journal_names(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for run_id in ("b", "a"):
        store.writer(run_id, create=True).close()
    (store.runs_dir / "notes.txt").write_text("x")
    (store.runs_dir / "-bad.jsonl").write_text("")
    assert store.run_ids() == ["a", "b"]
