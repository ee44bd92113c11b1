"""The database goes away under a running supervisor, then comes back.

On a private server of its own (the session's is shared by the other tests): the
supervisor stops with one line (exit 1, no traceback), as systemd's Restart=on-failure
expects, and so does a command; once the server answers again, the run goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pg_cluster import running_cluster
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")


@pytest.mark.slow
def test_a_supervisor_whose_database_goes_away_stops_in_one_line_and_resumes_after(tmp_path: Path) -> None:
    with running_cluster() as cluster:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
        env = clean | {"RATCHET_HOME": str(tmp_path / "home"), "RATCHET_STORE": cluster.url(),
                       "RATCHET_LEDGER": str(tmp_path / "ledger.jsonl")}

        def ratchet(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([RATCHET, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

        assert ratchet("run", "renewal_review", "--id", "r1").returncode == 0
        log = tmp_path / "supervise.log"
        with open(log, "w") as err:
            supervisor = subprocess.Popen([RATCHET, "supervise", "--rescan", "0.5"], env=env, cwd=ROOT,
                                          stderr=err, text=True)
        try:
            wait_for(lambda: "supervising 1 runs" in log.read_text(), timeout=30, what="the supervisor up")
            cluster.stop()
            assert supervisor.wait(timeout=60) == 1
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
                supervisor.wait(10)
        last = log.read_text().strip().splitlines()[-1]
        assert last.startswith("ratchet: error: postgresql://") and "hint: is the server running" in last
        assert "Traceback" not in log.read_text()
        refused = ratchet("approve", "r1", "--by", "alice")  # it checks the run exists: in the database
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "cannot connect" in refused.stderr
        cluster.run()
        assert ratchet("approve", "r1", "--by", "alice").returncode == 0
        assert ratchet("supervise", "--once").returncode == 0
        assert '"state": "sent"' in ratchet("status", "r1", "--json").stdout
