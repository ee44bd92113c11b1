"""Kill -9 of `ratchet archive` at every step of moving a journal: never in neither place.

A real `ratchet archive` process, on a home of real journals, SIGKILLs itself at each
crash point the archive passes (RATCHET_CRASH_AT; the points are counted first with
RATCHET_CRASH_COUNT, so a new step cannot go untested). After each kill the run is in
runs/ or in archive/ (in both after the rename), its records intact; the next archive
finishes the job and leaves no temporary file behind.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "journals" / "renewal_approved.jsonl"
POINTS = ["archive_written", "archive_renamed", "journal_removed"]

pytestmark = pytest.mark.faults


def archive(folder: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    environ.update(RATCHET_HOME=str(folder / "home"), RATCHET_CLOCK_FILE=str(folder / "clock"), **env)
    cmd = [sys.executable, "-c", "from engine.cli import main; main()", "archive", "--finished-before", "30d"]
    return subprocess.run(cmd, cwd=folder, env=environ, capture_output=True, text=True, timeout=60)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "home" / "runs").mkdir(parents=True)
    shutil.copy(FIXTURE, tmp_path / "home" / "runs" / "renewal-acme.jsonl")
    (tmp_path / "clock").write_text("2026-12-28T09:00:00Z")
    return tmp_path


def test_the_archive_passes_every_crash_point_once(folder: Path) -> None:
    counts = folder / "points"
    done = archive(folder, RATCHET_CRASH_COUNT=str(counts))
    assert done.returncode == 0, done.stderr
    assert counts.read_text().split() == POINTS


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_step_leaves_the_run_somewhere_and_the_next_archive_finishes(folder: Path, point: str) -> None:
    journal = folder / "home" / "runs" / "renewal-acme.jsonl"
    packed = folder / "home" / "archive" / "renewal-acme.jsonl.gz"
    original = FIXTURE.read_bytes()
    killed = archive(folder, RATCHET_CRASH_AT=f"{point}:1")
    assert killed.returncode == -9, killed.stderr
    in_runs = journal.exists() and journal.read_bytes() == original
    in_archive = packed.exists() and gzip.decompress(packed.read_bytes()) == original
    assert in_runs or in_archive, f"killed at {point}: the run is nowhere"
    assert (in_runs, in_archive) == {"archive_written": (True, False), "archive_renamed": (True, True),
                                     "journal_removed": (False, True)}[point]
    again = archive(folder)
    assert again.returncode == 0, again.stdout + again.stderr
    assert ("in both runs/ and archive/" in again.stdout) == (point == "archive_renamed")
    assert not journal.exists() and gzip.decompress(packed.read_bytes()) == original
    assert os.listdir(folder / "home" / "archive") == [packed.name]  # no temporary file left
    assert os.listdir(folder / "home" / "runs") == []
