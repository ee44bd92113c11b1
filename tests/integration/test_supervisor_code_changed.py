"""A deploy renames an action under a waiting run: a real supervisor escalates "code changed".

Every process here is real (the CLI, `supervise`): the module is edited on disk between
them, as a deploy would. The approval is applied (done/), the run escalates in the state
whose code is gone, with a ticket; status flags the module; once the code is fixed,
`resolve retry` finishes the run.
"""

from __future__ import annotations

import json
import signal

from waiting import wait_for

MACHINE = """
name: renewal
version: 1
initial: draft
states:
  draft: {action: renamed_acts:draft}
  review: {approvers: [alice], timeout: 1d}
  send: {action: renamed_acts:send, idempotent: false}
  done: {final: true}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: approve, source: review, dest: send}
  - {trigger: ok, source: send, dest: done}
"""

ACTIONS = """
def draft(ctx):
    return {"drafted": True}


def send(ctx):
    return {"sent": True}
"""


def test_an_action_renamed_under_a_waiting_run_escalates_and_the_approval_is_filed(env):
    folder = env.dir / "code"  # imported only by the subprocesses, never by this one
    folder.mkdir()
    (folder / "renewal.yaml").write_text(MACHINE)
    module = folder / "renamed_acts.py"
    module.write_text(ACTIONS)
    assert env.cli("start", str(folder / "renewal.yaml"), "--id", "r1").returncode == 0
    assert env.once().returncode == 0
    assert (env.row("r1").status, env.row("r1").code_changed) == ("waiting", [])

    module.write_text(ACTIONS.replace("def send(", "def send_mail("))  # the deploy
    assert env.row("r1").code_changed == ["renamed_acts"]
    status = env.cli("status")
    assert "waiting [code changed]" in status.stdout.decode()
    assert json.loads(env.cli("status", "--json").stdout)[0]["code_changed"] == ["renamed_acts"]

    supervisor = env.supervise()
    dropped = env.send("r1", "approve")
    row = env.wait_status("r1", "escalated", "send")
    assert row.escalation == "code changed"
    assert "renamed_acts:send: module 'renamed_acts' has no 'send' (did you mean 'send_mail'?)" in (
        row.escalation_detail)
    wait_for((env.home.inbox_done / dropped.name).exists, what="the approval to be filed in done/")
    assert env.claimed_files() == [] and not list(env.home.inbox_rejected.iterdir())
    # The approval is filed once journaled (the mail lane); the step, its escalation and then
    # its ticket follow on a worker.
    assert wait_for(lambda: env.ticket("r1"), what="the ticket")["reason"] == "code changed"
    failed = [r for r in env.records("r1") if r["type"] == "step_failed"]
    assert [(r["state"], r["error_type"], r["retryable"]) for r in failed] == [("send", "ImportPathError", False)]
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0

    module.write_text(ACTIONS)  # the fix
    assert env.cli("resolve", "r1", "retry", "--by", "carol").returncode == 0
    assert env.once().returncode == 0
    row = env.row("r1")
    assert (row.status, row.state, row.code_changed) == ("finished", "done", [])
    assert env.ticket("r1") is None
