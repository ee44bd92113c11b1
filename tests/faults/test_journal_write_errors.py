"""A failed write poisons the writer; the directory entry of a new journal is fsync'd.

The write failure is real: a child process lowers RLIMIT_FSIZE so the kernel stops the
write part-way (a short write, then EFBIG), as a full disk would (ENOSPC). The syncs are
watched twice: with strace where it is installed, and everywhere by a spy around
`os.fsync`/`os.fdatasync` that makes the real call and notes what it synced.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from journal import FileStore, StepStarted, StepSucceeded, Transition, read, verify

from journal_builders import run_started

FILLER = """
import json, resource, signal, sys
from journal import FileStore, JournalWriteError, RunStarted, StepStarted, StepSucceeded, Transition, hash_definition
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
w = FileStore(sys.argv[1]).writer("r1", create=True)
w.append(RunStarted(run_id="r1", machine="m", version=1, definition={}, definition_hash=hash_definition({})))
w.append(StepStarted(state="s", attempt=1, idempotency_key="r1/s/1"))
room = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (w.size + room, resource.RLIM_INFINITY))
out = {"size_before": w.size}
try:
    w.append(StepSucceeded(state="s", attempt=1, trigger="ok", data={"blob": "x" * 500}))
except JournalWriteError as exc:
    out["first"] = str(exc)
    out["errno"] = exc.__cause__.errno
try:
    w.append(Transition(trigger="ok", source="s", dest="t"))  # tiny: it would fit, yet must be refused
except JournalWriteError as exc:
    out["second"] = str(exc)
print(json.dumps(out))
"""


def test_a_write_error_makes_the_writer_refuse_further_appends(tmp_path: Path) -> None:
    room = 40
    proc = subprocess.run([sys.executable, "-c", FILLER, str(tmp_path), str(room)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["errno"] == errno.EFBIG and "append failed" in out["first"]
    assert "writer unusable after an earlier error" in out["second"] and "reopen" in out["second"]

    path = FileStore(tmp_path).path("r1")
    assert path.stat().st_size == out["size_before"] + room  # the kernel wrote a partial line
    result = verify(path)
    assert result.ok and result.records == 2 and result.torn_bytes == room

    with FileStore(tmp_path).writer("r1") as w:  # reopening from disk: the partial line is cut
        assert w.recovered_bytes == room and w.last_seq == 2
        w.append(Transition(trigger="ok", source="s", dest="t"))
    assert verify(path).ok and [r.seq for r in read(path).records] == [1, 2, 3]


CREATE = """
import sys
from journal import FileStore, RunStarted, hash_definition
with FileStore(sys.argv[1]).writer("r1", create=True) as w:
    w.append(RunStarted(run_id="r1", machine="m", version=1, definition={}, definition_hash=hash_definition({})))
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch the real syscalls")
def test_creating_a_journal_fsyncs_its_directory_and_each_append_syncs_before_returning(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    log = tmp_path / "trace"
    cmd = ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=openat,write,fsync,fdatasync",
           sys.executable, "-c", CREATE, str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    calls = [line.split(None, 1)[1] for line in log.read_text().splitlines() if " " in line]

    def index(pattern: str, start: int = 0) -> tuple[int, re.Match]:
        for i in range(start, len(calls)):
            if m := re.search(pattern, calls[i]):
                return i, m
        raise AssertionError(f"no syscall matching {pattern!r} after #{start}:\n" + "\n".join(calls[start:][-40:]))

    created, m = index(rf'openat\(AT_FDCWD, "{re.escape(str(runs))}/r1\.jsonl", [^)]*O_CREAT\|O_EXCL[^)]*\) = (\d+)')
    journal_fd = m.group(1)
    opened_dir, m = index(rf'openat\(AT_FDCWD, "{re.escape(str(runs))}", [^)]*O_DIRECTORY[^)]*\) = (\d+)', created)
    synced_dir, _ = index(rf"^fsync\({m.group(1)}\)", opened_dir)
    wrote, _ = index(rf"^write\({journal_fd}, .*run_started", synced_dir)
    index(rf"^fdatasync\({journal_fd}\)\s+= 0", wrote)


class SyncSpy:
    """Counts the real `os.fsync` / `os.fdatasync` calls (and still makes them): which file
    each one synced, its size then, and for a folder the names in it then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str, int, frozenset[str]]] = []
        for name in ("fsync", "fdatasync"):
            monkeypatch.setattr(os, name, self._spy(name, getattr(os, name)))

    def _spy(self, name: str, real):
        def sync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            names = frozenset(os.listdir(path)) if os.path.isdir(path) else frozenset()
            self.calls.append((name, path, os.fstat(fd).st_size, names))
            return real(fd)
        return sync

    def of(self, path: Path, start: int = 0) -> list[tuple[str, str, int, frozenset[str]]]:
        return [c for c in self.calls[start:] if c[1] == str(path.resolve())]


def test_a_new_journal_is_in_a_synced_folder_and_each_append_is_synced_before_it_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same two promises as the strace test above, without strace: a mutant dropping
    the fdatasync of an append, or the fsync of runs/ after creating a journal, fails here."""
    runs = tmp_path / "runs"
    spy = SyncSpy(monkeypatch)
    store = FileStore(tmp_path)
    with store.writer("r1", create=True) as w:
        path = store.path("r1")
        assert any(name == "fsync" and "r1.jsonl" in names for name, _, _, names in spy.of(runs)), \
            f"runs/ was not fsync'd after the journal was created: {spy.calls}"
        assert any("runs" in names for _, _, _, names in spy.of(tmp_path))  # runs/ itself is new too
        first = run_started(definition={})
        batches = [[first],
                   [StepStarted(state="s", attempt=1, idempotency_key="r1/s/1")],
                   [StepSucceeded(state="s", attempt=1, trigger="ok"), Transition(trigger="ok", source="s", dest="t")]]
        for batch in batches:
            start = len(spy.calls)
            w.append_many(batch)
            size = path.stat().st_size
            synced = [(name, synced_size) for name, _, synced_size, _ in spy.of(path, start)]
            # A sync of the journal after the whole batch was written, before append_many returned.
            assert any(synced_size == size for _, synced_size in synced), \
                f"batch {[type(r).__name__ for r in batch]} was not synced before append returned: {synced}"
    assert [r.seq for r in read(path).records] == [1, 2, 3, 4]
