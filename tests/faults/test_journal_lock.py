"""One writer per journal across processes: a second is refused, naming the run; death releases the lock."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from journal import FileStore, JournalLockedError, Transition, verify

from journal_builders import run_started
from waiting import wait_for

HOLDER = """
import sys
from journal import FileStore, RunStarted, hash_definition
w = FileStore(sys.argv[1]).writer("renewal-acme", create=True)
if w.last_seq == 0:
    w.append(RunStarted(run_id="renewal-acme", machine="m", version=1, definition={},
                        definition_hash=hash_definition({})))
print("holding", flush=True)
sys.stdin.read()  # hold the lock until the parent closes our stdin (or kills us)
"""

CONTENDER = """
import sys
from journal import FileStore, JournalLockedError
try:
    FileStore(sys.argv[1]).writer("renewal-acme")
except JournalLockedError as exc:
    print(exc)
    sys.exit(3)
print("got the lock")
"""


def read_line(proc: subprocess.Popen, timeout: float = 20.0) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError("the holder did not report in time")
    return proc.stdout.readline().strip()


@pytest.fixture
def holder(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert read_line(proc) == "holding"
    yield tmp_path, proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


def test_a_second_writer_process_is_refused_with_the_runs_name(holder) -> None:
    home, _proc = holder
    with pytest.raises(JournalLockedError) as info:
        FileStore(home).writer("renewal-acme")
    assert info.value.run_id == "renewal-acme"
    assert "run 'renewal-acme' is already being advanced by another process" in str(info.value)

    out = subprocess.run([sys.executable, "-c", CONTENDER, str(home)], capture_output=True, text=True)
    assert out.returncode == 3 and "renewal-acme" in out.stdout and "locked" in out.stdout


def test_the_lock_dies_with_its_holder(holder) -> None:
    home, proc = holder
    store = FileStore(home)
    with pytest.raises(JournalLockedError):
        store.writer("renewal-acme")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def writer_once_free():  # the kernel releases the lock when the holder's descriptor goes
        with contextlib.suppress(JournalLockedError):
            return store.writer("renewal-acme")
        return None

    with wait_for(writer_once_free, timeout=10, what="the lock to be released after kill -9") as w:
        w.append(Transition(trigger="resumed", source="a", dest="b"))
    assert verify(store.path("renewal-acme")).records == 2


def test_creating_the_same_run_twice_concurrently_yields_one_journal(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    first = store.writer("r1", create=True)
    with pytest.raises(JournalLockedError):
        store.writer("r1", create=True)
    first.append(run_started(definition={}))
    first.close()
    assert store.run_ids() == ["r1"] and verify(store.path("r1")).records == 1
