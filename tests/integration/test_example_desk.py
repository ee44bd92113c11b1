"""examples/approval_desk.py, run as a user runs it: a real web endpoint process on the Python
API, beside a real `ratchet supervise`, spoken to over HTTP; the shipped renewal machine."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")


class Desk:
    """The desk and a supervisor on one home; HTTP calls to the desk."""

    def __init__(self, folder: Path) -> None:
        self.home, self.ledger = folder / "home", folder / "ledger.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET")}
        self.env = {**env, "RATCHET_HOME": str(self.home), "RATCHET_LEDGER": str(self.ledger)}
        self.procs: list[subprocess.Popen] = []
        desk = self._spawn([sys.executable, str(ROOT / "examples" / "approval_desk.py"), "--port", "0"],
                           stdout=subprocess.PIPE)
        first = desk.stdout.readline()  # "approval desk on http://127.0.0.1:PORT"
        assert first.startswith("approval desk on http://127.0.0.1:"), first
        self.url = first.split()[-1]

    def _spawn(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, text=True, start_new_session=True,
                                stderr=subprocess.DEVNULL, **kwargs)
        self.procs.append(proc)
        return proc

    def supervise(self) -> None:
        self._spawn([RATCHET, "supervise", "--rescan", "1"])

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def ratchet(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([RATCHET, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture
def desk(tmp_path: Path):
    d = Desk(tmp_path)
    yield d
    d.close()


def test_the_desk_starts_runs_and_relays_approvals(desk: Desk) -> None:
    status, body = desk.call("POST", "/runs", {"machine": "renewal_review", "input": {"customer": "acme"},
                                               "id": "renewal-acme"})
    assert (status, body) == (201, {"id": "renewal-acme"})
    desk.supervise()  # the home exists now: the desk's first run made it
    status, run = desk.call("GET", "/runs/renewal-acme?wait=settled")
    assert status == 200 and (run["status"], run["state"], run["approvers"]) == ("waiting", "review", ["alice", "bob"])

    status, answer = desk.call("POST", "/runs/renewal-acme/approve", {"by": "mallory"})
    assert status == 200 and answer["applied"] is False and "'mallory' is not an approver" in answer["reason"]
    assert answer["run"]["status"] == "waiting"

    status, answer = desk.call("POST", "/runs/renewal-acme/approve", {"by": "alice", "comment": "price ok"})
    assert status == 200 and answer["applied"] is True and answer["reason"] is None
    run = answer["run"]
    assert (run["status"], run["state"], run["outcome"]) == ("finished", "sent", "renewed")

    status, runs = desk.call("GET", "/runs?status=finished")
    assert status == 200 and [r["id"] for r in runs] == ["renewal-acme"]
    assert desk.call("GET", "/runs/nope")[0] == 404
    status, refused = desk.call("POST", "/runs/renewal-acme/approve", {"by": "alice"})
    assert status == 409 and "takes no more messages" in refused["error"]

    # The journal tells the same story as for a person at the command line.
    journal = [json.loads(line) for line in (desk.home / "runs" / "renewal-acme.jsonl").read_text().splitlines()]
    decisions = [(r["type"], r["by"]) for r in journal if r["type"] in ("trigger_received", "trigger_refused")]
    assert decisions == [("trigger_refused", "mallory"), ("trigger_received", "alice")]
    sent = Counter(e["kind"] for e in map(json.loads, desk.ledger.read_text().splitlines()) if e["effect"])
    assert sent["email.send"] == 1
    verify = desk.ratchet("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
