"""The examples/ scenarios, run as a newcomer runs them: each script as a real subprocess.

Each test runs one script of examples/README.md against the installed `ratchet` console
script, in its own folder under tmp_path, then checks what a user would check: the final
state in `ratchet status --json`, the side effects in the fake services' ledger, and
`ratchet verify`. The invoice script really kills -9 a real supervisor mid-charge (it
waits for the charge's `step_started` in the journal, with a deadline, then kills).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")  # the venv's console script
SCRIPT_TIMEOUT = 60


class Demo:
    """One scenario's folder (DEMO): its home, ledger and script output."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.home = folder / "home"
        self.out = ""

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET")}
        return {**env, "RATCHET": RATCHET, "DEMO": str(self.folder), **extra}

    def run_script(self, name: str, **extra: str) -> str:
        """Run examples/NAME in its own process group; kill the whole group if it hangs."""
        proc = subprocess.Popen(["bash", str(ROOT / "examples" / name)], env=self.env(**extra),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            self.out, _ = proc.communicate(timeout=SCRIPT_TIMEOUT)
        finally:
            if proc.poll() is None or proc.returncode != 0:
                _kill_group(proc.pid)
        assert proc.returncode == 0, self.out
        return self.out

    def ratchet(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([RATCHET, "--home", str(self.home), *args], capture_output=True, text=True,
                              env=self.env(), cwd=ROOT, timeout=SCRIPT_TIMEOUT)

    def status(self) -> dict[str, dict]:
        out = self.ratchet("status", "--json")
        assert out.returncode == 0, out.stderr
        return {row["run_id"]: row for row in json.loads(out.stdout)}

    def effects(self, run_id: str) -> Counter:
        """kind -> how many calls changed the outside world, for one run."""
        return Counter(e["kind"] for e in self.ledger() if e["run_id"] == run_id and e["effect"])

    def ledger(self) -> list[dict]:
        path = self.folder / "ledger.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def journal(self, run_id: str) -> list[dict]:
        """The run's records as dicts, without its seals (what the run did)."""
        lines = (self.home / "runs" / f"{run_id}.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["type"] != "sealed"]

    def assert_verified(self) -> None:
        out = self.ratchet("verify")
        assert out.returncode == 0 and out.stderr == "", out.stdout + out.stderr


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    return Demo(tmp_path / "demo")


def test_renewal_approved_by_a_dropped_file_and_by_the_cli(demo: Demo) -> None:
    demo.run_script("renewal_approval.sh")

    rows = demo.status()
    for run_id in ("renewal-acme", "renewal-globex"):
        assert (rows[run_id]["status"], rows[run_id]["state"], rows[run_id]["outcome"]) == (
            "finished", "sent", "renewed")
        assert demo.effects(run_id)["email.send"] == 1
    received = [r for r in demo.journal("renewal-acme") if r["type"] == "trigger_received"]
    assert [(r["trigger"], r["by"], r["comment"]) for r in received] == [("approve", "alice", "price ok")]
    assert received[0]["source_file"].endswith("~approve-acme.json")  # the dropped file, as claimed
    done = sorted(p.name for p in (demo.home / "inbox" / "done").iterdir())
    assert len(done) == 2 and "approve-acme.json" in done
    assert list((demo.home / "inbox" / "rejected").iterdir()) == []
    demo.assert_verified()


def test_invoice_survives_kill_9_mid_charge_without_charging_twice(demo: Demo) -> None:
    out = demo.run_script("invoice_crash.sh", RATCHET_SLOW_CHARGE_S="3")

    # The kill landed while the third attempt was charging: nothing charged yet then.
    after_kill = out[out.index("$ kill -9"):]
    first_count = next(line for line in after_kill.splitlines() if line.startswith("ledger: billing.charge"))
    assert first_count == "ledger: billing.charge for inv-1001 happened 0 time(s)"
    records = demo.journal("inv-1001")
    escalated = next(i for i, r in enumerate(records) if r["type"] == "escalated")
    in_flight = records[escalated - 1]
    assert (in_flight["type"], in_flight["state"], in_flight["attempt"]) == ("step_started", "charge", 3)
    assert records[escalated]["reason"] == "unknown outcome"
    resolved = records[escalated + 1]
    assert (resolved["type"], resolved["action"], resolved["by"]) == ("resolved", "retry", "finance")

    row = demo.status()["inv-1001"]
    assert (row["status"], row["state"], row["outcome"]) == ("finished", "paid", "paid")
    charges = [e for e in demo.ledger() if e["kind"] == "billing.charge"]
    assert [e["effect"] for e in charges] == [False, False, True]  # two 503s, then one charge
    assert demo.effects("inv-1001") == Counter({"billing.charge": 1, "email.receipt": 1, "notify": 1})
    demo.assert_verified()


def test_onboarding_times_out_escalates_and_is_closed_by_a_person(demo: Demo) -> None:
    out = demo.run_script("onboarding_timeout.sh")

    row = demo.status()["onboarding-initech"]
    assert (row["status"], row["state"], row["outcome"]) == ("finished", "closed", "no_reply")
    assert demo.effects("onboarding-initech") == Counter({"email.draft": 1, "reminder.send": 2, "notify": 1})
    types = [r["type"] for r in demo.journal("onboarding-initech")]
    assert types.count("timeout_fired") == 3 and types.count("escalated") == 1
    resolved = next(r for r in demo.journal("onboarding-initech") if r["type"] == "resolved")
    assert (resolved["action"], resolved["trigger"], resolved["by"]) == ("skip", "close", "carol")
    # The ticket (shown by the script, removed on resolution) offered what can be done.
    assert "ratchet resolve onboarding-initech skip close --by NAME" in out
    assert "skip timeout" not in out  # its guard no longer holds: not offered
    assert list((demo.home / "escalations").iterdir()) == []
    demo.assert_verified()


def test_contract_review_fans_out_one_child_per_clause_and_joins_them(demo: Demo) -> None:
    out = demo.run_script("contract_review.sh")

    rows = demo.status()
    parent = rows["contract-acme"]
    assert (parent["status"], parent["state"], parent["outcome"]) == ("finished", "signed", "signed")
    children = [f"contract-acme.review_clauses.{i}" for i in range(6)]
    assert sorted(r for r in rows if r != "contract-acme") == children
    assert all(rows[c]["status"] == "finished" and rows[c]["parent"] == "contract-acme" for c in children)
    assert [rows[c]["outcome"] for c in children] == ["acceptable", "flagged", "acceptable", "acceptable",
                                                      "flagged", "acceptable"]
    journal = demo.journal("contract-acme")
    spawned = [[c["run_id"] for c in r["children"]] for r in journal if r["type"] == "spawned"]
    assert len(spawned[0]) == 4 and sum(spawned, []) == children  # four at a time, then as slots freed, in order
    assert sorted(r["child"] for r in journal if r["type"] == "child_finished") == children  # each end once
    assert [r["trigger"] for r in journal if r["type"] == "transition"].count("joined") == 1
    summary = next(r for r in journal if r["type"] == "step_succeeded" and r["state"] == "summarize")
    assert summary["data"] == {"flagged": ["1", "4"], "clauses_reviewed": 6}
    reviews = [e for e in demo.ledger() if e["kind"] == "clause.review"]
    assert sum(not e["effect"] for e in reviews) == 6  # each clause's first call failed (the flaky model)...
    assert Counter(e["run_id"] for e in reviews if e["effect"]) == Counter(children)  # ...then once each
    assert "└ contract-acme.review_clauses.0" in out  # status --tree
    demo.assert_verified()
