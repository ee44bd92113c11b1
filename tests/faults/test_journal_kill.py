"""kill -9 a process in a tight append loop: the journal still verifies, and recovery keeps every complete record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from journal import FileStore, Transition, read, verify

from waiting import wait_for

# Appends forever: batches of three records (the engine's usual step), `size` bytes of data each.
APPENDER = """
import sys
from journal import FileStore, RunStarted, StepStarted, StepSucceeded, Transition, hash_definition
store = FileStore(sys.argv[1], durability=sys.argv[3])
size = int(sys.argv[2])
w = store.writer("r1", create=True)
if w.last_seq == 0:
    w.append(RunStarted(run_id="r1", machine="m", version=1, definition={"name": "m"},
                        definition_hash=hash_definition({"name": "m"})))
i = 0
while True:
    i += 1
    w.append_many([
        StepStarted(state="s", attempt=1, idempotency_key=f"r1/s/{i}"),
        StepSucceeded(state="s", attempt=1, trigger="ok", data={"blob": "x" * size, "i": i}),
        Transition(trigger="ok", source="s", dest="s"),
    ])
"""


def mid_line(path: Path) -> bool:
    """True while a write is visibly in progress: the file does not end with a newline."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def kill_mid_append(runs: Path, size: int, durability: str, grow_by: int, aim: bool) -> None:
    path = runs / "r1.jsonl"
    before = path.stat().st_size if path.exists() else 0
    child = subprocess.Popen([sys.executable, "-c", APPENDER, str(runs.parent), str(size), durability])
    try:
        wait_for(lambda: path.exists() and path.stat().st_size > before + grow_by, what="appends")
        # Aim the kill inside a write when one can be seen (large lines); else kill anyway.
        deadline = time.monotonic() + 2.0
        while aim and not mid_line(path) and time.monotonic() < deadline:
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "size, durability, grow_by",
    [(20, "fsync", 20_000), (200, "none", 200_000), (1_000_000, "none", 5_000_000)],
    ids=["small-fsync", "medium-nosync", "1MB-nosync"],
)
def test_sigkill_in_a_tight_append_loop_leaves_a_verifiable_journal(tmp_path: Path, size, durability, grow_by) -> None:
    store = FileStore(tmp_path)
    path = store.path("r1")
    aim = size >= 100_000  # a 1 MB line takes long enough to write that the kill can land inside it
    torn_seen = rounds = 0
    while rounds < 3 or (aim and not torn_seen and rounds < 8):  # each round resumes the same journal
        rounds += 1
        kill_mid_append(store.runs_dir, size, durability, grow_by, aim)
        result = verify(path, run_id="r1")
        assert result.ok, str(result)
        torn_seen += result.torn
        complete = read(path)
        assert len(complete.records) == result.records and complete.torn_bytes == result.torn_bytes

        with store.writer("r1") as w:  # recovery: cut the torn tail, continue the chain
            assert w.recovered_bytes == result.torn_bytes and w.last_seq == result.records
            w.append(Transition(trigger="resumed", source="s", dest="s"))
        after = verify(path, run_id="r1")
        assert after.ok and not after.torn and after.records == result.records + 1
        assert [r.seq for r in read(path).records[: result.records]] == [r.seq for r in complete.records]
    if aim:
        assert torn_seen, "no kill landed inside a write: the torn-tail path was not exercised"
