"""Code that changed under a run escalates it ("code changed"), naming the path and the error.

The run's definition is pinned, its code is not. Each test writes a real module beside
its machine, starts a run, then edits the module as a deploy would; a new Runner (as a
new process would) then meets the changed code. Never a hang: an escalation with its
ticket, and the step's outcome or the message's answer journaled.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from engine.definition.fingerprint import CodeCheck
from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.runner import Runner
from engine.supervise.message import Message
from journal.records import record_type

from journal_builders import story

ACTIONS = '''
NOTIFIED = []

def draft(ctx):
    return {"drafted": True}

def send(ctx):
    return {"sent": True}

def big(data):
    return data.get("amount", 0) >= 100

def notify(ctx):
    NOTIFIED.append(ctx.idempotency_key)

class Fatal(Exception):
    pass
'''

MACHINE = """
name: renewal
version: 1
initial: draft
STATE_HOOK
states:
  draft: {action: MOD:draft}
  review: {approvers: [alice], timeout: 1d}
  send: {action: MOD:send, idempotent: false, non_retryable: [NON_RETRYABLE]}
  done: {final: true}
  failed: {final: true, outcome: failed}
transitions:
  - {trigger: ok, source: draft, dest: review}
  - {trigger: approve, source: review, dest: send, conditions: APPROVE_IF}
  - {trigger: ok, source: send, dest: done}
  - {trigger: error, source: send, dest: failed}
"""


class Code:
    """A real module beside a real machine file, edited in place as a deploy would."""

    def __init__(self, folder: Path, **machine: str) -> None:
        self.module = f"cc_{uuid.uuid4().hex[:8]}"  # sys.modules is one namespace per process
        self.folder = folder
        self.path = folder / f"{self.module}.py"
        self.path.write_text(ACTIONS)
        text = MACHINE.replace("STATE_HOOK", machine.get("hook", ""))
        text = text.replace("APPROVE_IF", machine.get("approve_if", "[]"))
        text = text.replace("NON_RETRYABLE", machine.get("non_retryable", ""))
        self.machine = folder / "renewal.yaml"
        self.machine.write_text(text.replace("MOD", self.module))

    def edit(self, old: str, new: str) -> None:
        self.path.write_text(self.path.read_text().replace(old, new))
        self.forget()

    def forget(self) -> None:
        """What a new process would see: nothing of this module imported yet."""
        sys.modules.pop(self.module, None)
        shutil.rmtree(self.folder / "__pycache__", ignore_errors=True)


@pytest.fixture
def clock():
    return FakeClock("2026-11-27T09:41:00Z")


@pytest.fixture
def make_code(tmp_path: Path):
    made: list[Code] = []

    def make(**machine: str) -> Code:
        folder = tmp_path / f"code{len(made)}"
        folder.mkdir()
        made.append(Code(folder, **machine))
        return made[-1]

    yield make
    for code in made:
        code.forget()


def runner(home: Home, clock: FakeClock) -> Runner:
    """A fresh runner: as a new process, it has resolved no code yet."""
    return Runner(home, clock=clock)


def to_review(home: Home, clock: FakeClock, code: Code) -> str:
    r = runner(home, clock)
    rs = r.launch(code.machine, {}, run_id="r1")
    assert (rs.status, rs.state) == ("waiting", "review")
    return rs.run_id


def types(home: Home, run_id: str) -> list[str]:
    return [record_type(r) for r in story(home.store.read(run_id).records)]


def approve(**data) -> Message:
    return Message(run="r1", trigger="approve", by="alice", data=data)


def ticket(home: Home) -> dict:
    return json.loads((home.escalations / "r1.json").read_text())


def test_an_action_renamed_under_a_waiting_run_escalates_code_changed_and_keeps_the_approval(
        home, clock, make_code):
    code = make_code()
    to_review(home, clock, code)
    code.edit("def send(", "def send_mail(")
    d = runner(home, clock).deliver("r1", approve(), source_file="approve-1.json")
    assert d.accepted  # the approval was valid: it is applied, not lost
    rs = d.state
    assert (rs.status, rs.state, rs.escalation.reason) == ("escalated", "send", "code changed")
    assert f"{code.module}:send: module '{code.module}' has no 'send'" in rs.escalation.detail
    assert "did you mean 'send_mail'" in rs.escalation.detail and "resolve with retry" in rs.escalation.detail
    failed = story(home.store.read("r1").records)[-2]
    assert (record_type(failed), failed.error_type, failed.retryable) == ("step_failed", "ImportPathError", False)
    assert types(home, "r1")[-5:] == ["trigger_received", "transition", "step_started", "step_failed", "escalated"]
    assert ticket(home)["reason"] == "code changed"

    code.edit("def send_mail(", "def send(")  # the fix is deployed
    d = runner(home, clock).deliver("r1", Message(run="r1", resolve="retry", by="carol"))
    assert d.accepted and (d.state.status, d.state.data["sent"]) == ("finished", True)
    assert not (home.escalations / "r1.json").exists()


def test_an_action_no_longer_callable_is_code_changed(home, clock, make_code):
    code = make_code()
    to_review(home, clock, code)
    code.edit("def send(ctx):\n    return {\"sent\": True}", "send = 42")
    rs = runner(home, clock).deliver("r1", approve()).state
    assert rs.escalation.reason == "code changed"
    assert "is not callable (it is a int)" in rs.escalation.detail


def test_an_action_whose_module_is_gone_is_code_changed_not_an_error_transition(home, clock, make_code):
    code = make_code()
    to_review(home, clock, code)
    code.path.rename(code.path.with_suffix(".py.old"))
    code.forget()
    rs = runner(home, clock).deliver("r1", approve()).state
    assert (rs.state, rs.escalation.reason) == ("send", "code changed")  # not `error` -> failed
    assert f"no module '{code.module}'" in rs.escalation.detail


def test_a_non_retryable_class_that_no_longer_imports_is_code_changed(home, clock, make_code):
    code = make_code(non_retryable="MOD:Fatal")
    to_review(home, clock, code)
    code.edit('return {"sent": True}', 'raise RuntimeError("smtp down")')
    code.edit("class Fatal(", "class Deadly(")
    rs = runner(home, clock).deliver("r1", approve()).state
    assert rs.escalation.reason == "code changed"
    assert f"{code.module}:Fatal" in rs.escalation.detail and "RuntimeError: smtp down" in rs.escalation.detail


def test_a_condition_renamed_under_a_waiting_run_refuses_the_message_and_escalates(home, clock, make_code):
    code = make_code(approve_if="MOD:big")
    to_review(home, clock, code)
    code.edit("def big(", "def large(")
    d = runner(home, clock).deliver("r1", approve(amount=500), source_file="approve-1.json")
    assert not d.accepted and f"{code.module}:big" in d.reason  # it could not be judged
    rs = d.state
    assert (rs.status, rs.state, rs.escalation.reason) == ("escalated", "review", "code changed")
    assert f"{code.module}:big: module '{code.module}' has no 'big'" in rs.escalation.detail
    assert types(home, "r1")[-2:] == ["trigger_refused", "escalated"]
    code.edit("def large(", "def big(")
    r = runner(home, clock)
    assert r.deliver("r1", Message(run="r1", resolve="retry", by="carol")).state.status == "waiting"
    assert r.deliver("r1", approve(amount=500)).state.status == "finished"


def test_a_run_entering_a_wait_whose_conditions_no_longer_import_escalates_at_once(home, clock, make_code):
    code = make_code(approve_if="MOD:big")
    r = runner(home, clock)
    r.start(code.machine, {}, run_id="r1")
    code.edit("def big(", "def large(")
    rs = runner(home, clock).advance("r1")  # drafts, enters review: nobody could approve it
    assert (rs.status, rs.state, rs.escalation.reason) == ("escalated", "review", "code changed")


def test_a_condition_renamed_under_a_step_outcome_escalates_after_the_outcome(home, clock, make_code):
    code = make_code()
    code.machine.write_text(code.machine.read_text().replace(
        "{trigger: ok, source: draft, dest: review}",
        f"{{trigger: ok, source: draft, dest: review, conditions: {code.module}:big}}"))
    r = runner(home, clock)
    r.start(code.machine, {}, run_id="r1")
    code.edit("def big(", "def large(")
    rs = runner(home, clock).advance("r1")
    assert (rs.state, rs.escalation.reason) == ("draft", "code changed")
    assert "a condition of 'ok'" in rs.escalation.detail
    assert types(home, "r1")[-2:] == ["step_succeeded", "escalated"]  # the outcome is kept


def test_an_on_escalate_hook_renamed_is_noted_in_the_ticket(home, clock, make_code):
    code = make_code(hook="on_escalate: MOD:notify")
    to_review(home, clock, code)
    code.edit("def notify(", "def notify_owner(")
    clock.advance(2 * 86400)
    rs = runner(home, clock).advance("r1")
    assert rs.escalation.reason == "timeout"
    assert ticket(home)["notify_error"].startswith(f"code changed: {code.module}:notify: module")


def test_run_started_keeps_a_fingerprint_of_each_module_and_status_sees_a_change(home, clock, make_code):
    code = make_code(approve_if="MOD:big")
    to_review(home, clock, code)
    started = home.store.read("r1").records[0]
    assert list(started.code) == [code.module] and started.code[code.module].startswith("sha256:")
    check = CodeCheck()
    assert check.changed(started.code, code.folder) == []
    code.edit("def big(", "def large(")
    assert CodeCheck().changed(started.code, code.folder) == [code.module]
    assert check.changed(started.code, code.folder) == []  # one look per module per listing
