"""`ratchet supervise` and its home: named (absolute) in the first log line, never made up.

Started in the wrong folder, a supervisor that silently created `./.ratchet` and watched
it would look healthy while every run waits elsewhere; it must refuse instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")


def ratchet(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env["RATCHET_LEDGER"] = str(cwd / "ledger.jsonl")
    return subprocess.run([RATCHET, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_supervise_refuses_a_home_that_does_not_exist_and_creates_nothing(tmp_path: Path) -> None:
    out = ratchet(tmp_path, "supervise", "--once")  # the default home, ./.ratchet, is not there
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (f"ratchet: error: no Ratchet home at {tmp_path / '.ratchet'}; create one with "
                          "'ratchet start'/'ratchet run', or point --home/RATCHET_HOME at it\n")
    assert os.listdir(tmp_path) == []


def test_supervise_names_its_home_as_an_absolute_path_in_its_first_line(tmp_path: Path) -> None:
    machine = str(ROOT / "machines" / "renewal_review.yaml")
    assert ratchet(tmp_path, "--home", "rel/home", "start", machine, "--id", "r1").returncode == 0
    out = ratchet(tmp_path, "--home", "rel/home", "supervise", "--once")
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0].endswith(f" ratchet supervise: home {tmp_path / 'rel' / 'home'}"), lines
    assert "supervising 1 runs" in out.stderr
