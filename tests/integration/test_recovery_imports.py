"""Continuing a crashed run reads its pinned definition without pydantic (and without
`transitions`, PyYAML or people.yaml's models): a worker that only continues runs does
not pay their import. Starting a run validates its definition with pydantic as before.

Real processes: a `ratchet run` killed with SIGKILL before its step's action, then a
fresh interpreter that continues the run and says which modules it loaded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from waiting import wait_for

MACHINE = """
name: resumable
version: 1
initial: work
states:
  work: {action: resumable_actions:work, retry: {attempts: 3, backoff: 1s}}
  review: {approvers: [alice], timeout: 2d}
  done: {final: true}
transitions:
  - {trigger: ok, source: work, dest: review}
  - {trigger: approve, source: review, dest: done}
"""
ACTIONS = "def work(ctx):\n    return {'worked': ctx.attempt}\n"
CONTINUE = """
import json, sys
from engine.run.runner import Runner
rs = Runner(sys.argv[1], machines_dir=sys.argv[2]).advance("crashed")
heavy = ("pydantic", "transitions", "yaml", "engine.definition.spec", "engine.definition.loader", "engine.trust.people")
print(json.dumps({"status": rs.status, "state": rs.state, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _crashed(tmp_path: Path) -> Path:
    (tmp_path / "resumable.yaml").write_text(MACHINE)
    (tmp_path / "resumable_actions.py").write_text(ACTIONS)
    home = tmp_path / "home"
    env = {**os.environ, "RATCHET_HOME": str(home), "RATCHET_CRASH_AT": "before_action:1"}
    done = subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", "run",
                           str(tmp_path / "resumable.yaml"), "--id", "crashed"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return home


def test_a_crashed_run_continues_without_importing_pydantic(tmp_path):
    home = _crashed(tmp_path)
    out = subprocess.run([sys.executable, "-c", CONTINUE, str(home), str(tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    assert (result["status"], result["state"]) == ("waiting", "review")  # the step ran, its transition followed
    assert result["loaded"] == [], result
    types = [json.loads(line)["type"] for line in (home / "runs" / "crashed.jsonl").read_text().splitlines()]
    assert types[:4] == ["run_started", "step_started", "step_abandoned", "step_started"], types


def test_starting_a_run_still_validates_its_definition_with_pydantic(tmp_path):
    (tmp_path / "bad.yaml").write_text(MACHINE.replace("retry: {attempts: 3", "retry: {attempts: 0"))
    (tmp_path / "resumable_actions.py").write_text(ACTIONS)
    code = ("import sys\nfrom engine.run.runner import Runner\nfrom engine.errors import DefinitionError\n"
            "try:\n    Runner(sys.argv[1]).start(sys.argv[2], {})\nexcept DefinitionError as exc:\n"
            "    print(exc, 'pydantic' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home"), str(tmp_path / "bad.yaml")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    assert "attempts" in out.stdout and out.stdout.rstrip().endswith("True"), out.stdout


def test_supervise_recovers_a_crashed_run_with_no_process_importing_the_validation_stack(tmp_path):
    home = _crashed(tmp_path)
    # The fork server is a fork of the supervisor (-X importtime holds there too), so stderr
    # lists the imports of the supervisor and of the process its workers fork from.
    env = {**os.environ, "RATCHET_HOME": str(home)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "from engine.cli import main; main()",
                           "supervise", "--once"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run crashed waits in 'review'" in done.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "engine.run.runner" in imported and "engine.supervise.worker" in imported  # both processes were seen
    assert imported & {"pydantic", "engine.definition.loader", "engine.definition.spec", "engine.trust.people",
                       "engine.supervise.message", "transitions", "yaml"} == set()
    assert imported & {"watchdog", "engine.supervise.watcher"} == set()  # --once watches nothing


# The recovered step reports on its own worker: which of the supervisor's loop modules it
# carries, and its grandparent (worker <- fork server <- supervisor).
INTROSPECTING = """
import os, sys
from pathlib import Path

def work(ctx):
    server = int(Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()[1])
    loop = ("watchdog", "engine.supervise.supervisor", "engine.supervise.mailroom", "engine.supervise.watcher")
    execd = b"forkserver" in Path(f"/proc/{os.getppid()}/cmdline").read_bytes()  # multiprocessing's
    return {"grandparent": server, "execd": execd, "loop_modules": [m for m in loop if m in sys.modules]}
"""


def test_the_fork_server_is_forked_before_the_supervisor_imports_its_loop(tmp_path):
    home = _crashed(tmp_path)
    (tmp_path / "resumable_actions.py").write_text(INTROSPECTING)  # the crash came before the action ran
    env = {**os.environ, "RATCHET_HOME": str(home)}
    sup = subprocess.Popen([sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--once"],
                           cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, stderr = sup.communicate(timeout=120)
    assert sup.returncode == 0, stderr[-2000:]
    records = [json.loads(line) for line in (home / "runs" / "crashed.jsonl").read_text().splitlines()]
    data = next(r["data"] for r in records if r["type"] == "step_succeeded")
    assert (data["grandparent"], data["execd"]) == (sup.pid, False), data  # our fork server's, not the fallback
    # The server was forked before the watches, the mailroom and the loop were imported: it
    # imported the runner while the supervisor imported those, and its workers carry none.
    assert data["loop_modules"] == [], data


# --- the head start (engine.supervise.head_start), in a supervisor started by the console script ---

RATCHET = str(Path(sys.executable).parent / "ratchet")  # the console script, as users run it
# The console script run as it is, with one debug hook: at the head start's crash point (its
# first jobs are out), the supervisor's process writes the modules it has imported to a file,
# then runs a shell command (a test drops an inbox file or starts a run there), then goes on.
HOOKED = """
import json, os, runpy, subprocess, sys
import engine.faults as faults

out, then, script = sys.argv[1:4]
real, me = faults.crash_point, os.getpid()

def crash_point(name):
    if name == "head_start" and os.getpid() == me:
        with open(out, "w") as f:
            json.dump(sorted(sys.modules), f)
        if then:
            subprocess.run(then, shell=True, check=True)
    real(name)

faults.crash_point = crash_point
sys.argv = [script, *sys.argv[4:]]
runpy.run_path(script, run_name="__main__")
"""
# Imported only once the recovered runs' first jobs are out (or never, for a recovery).
LATER = {"click", "engine.cli.app", "engine.cli.supervision", "engine.supervise.supervisor",
         "engine.supervise.mailroom", "engine.supervise.lane", "engine.supervise.agenda", "engine.supervise.claims",
         "engine.supervise.children", "engine.supervise.inbox", "engine.supervise.message", "engine.supervise.postbox",
         "engine.supervise.stopping", "engine.supervise.watcher", "watchdog", "engine.supervise.metrics",
         "prometheus_client", "multiprocessing.forkserver", "engine.run.runner", "engine.trust.people", "pydantic",
         "yaml", "transitions", "engine.definition.loader", "engine.definition.spec", "engine.view"}


def _hooked(tmp_path: Path, home: Path, *args: str, then: str = "") -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env["RATCHET_HOME"] = str(home)
    with open(tmp_path / "supervise.log", "w") as log:  # the process keeps its own descriptor
        return subprocess.Popen([sys.executable, "-c", HOOKED, str(tmp_path / "modules.json"), then, RATCHET,
                                 "supervise", *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                text=True)


def _types(home: Path, run_id: str) -> list[str]:
    path = home / "runs" / f"{run_id}.jsonl"
    return [json.loads(line)["type"] for line in path.read_text().splitlines()] if path.exists() else []


def _log(tmp_path: Path) -> str:
    return (tmp_path / "supervise.log").read_text()


@pytest.mark.parametrize("once", [True, False], ids=["--once", "watching"])
def test_the_crashed_run_goes_to_a_worker_before_the_supervisor_imports_its_loop(tmp_path, once):
    home = _crashed(tmp_path)
    sup = _hooked(tmp_path, home, *(["--once"] if once else []))
    try:
        wait_for(lambda: "run crashed waits in 'review'" in _log(tmp_path), timeout=60, what="the recovery")
        if not once:
            sup.send_signal(signal.SIGTERM)
        assert sup.wait(60) == 0, _log(tmp_path)
    finally:
        sup.kill()
        sup.wait(60)
    loaded = set(json.loads((tmp_path / "modules.json").read_text()))
    assert {"engine.supervise.head_start", "engine.supervise.workers", "engine.supervise.runs"} <= loaded
    assert loaded & LATER == set(), sorted(loaded & LATER)
    assert _types(home, "crashed")[:4] == ["run_started", "step_started", "step_abandoned", "step_started"]
    assert "Traceback" not in _log(tmp_path)


def test_a_file_dropped_or_a_run_started_during_the_head_start_is_not_lost(tmp_path):
    home = _crashed(tmp_path)
    env = {**os.environ, "RATCHET_HOME": str(home)}
    waiter = subprocess.run([RATCHET, "run", "resumable.yaml", "--id", "waiter"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert waiter.returncode == 0 and _types(home, "waiter")[-2] == "waiting", waiter.stderr
    # Both land after the head start read the journals and the inbox, before the watches start:
    # no file event will ever come for them, and --rescan 3600 leaves only the loop's first scans.
    then = f"{RATCHET} approve waiter --by alice && {RATCHET} start resumable.yaml --id late"
    sup = _hooked(tmp_path, home, "--rescan", "3600", then=then)
    try:
        wait_for(lambda: "run_finished" in _types(home, "waiter"), timeout=60, what="the approval's delivery")
        wait_for(lambda: "waiting" in _types(home, "late"), timeout=60, what="the late run's first step")
        wait_for(lambda: "waiting" in _types(home, "crashed"), timeout=60, what="the recovery")
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(60) == 0, _log(tmp_path)
    finally:
        sup.kill()
        sup.wait(60)
    assert (tmp_path / "modules.json").exists()  # the head start was taken: the hook ran in it
    assert list((home / "inbox" / "done").iterdir()) and not list((home / "inbox" / "rejected").iterdir())


LEDGER_ACTION = """
from pathlib import Path

def work(ctx):
    with open(Path(__file__).with_name("ledger.txt"), "a") as f:
        f.write(ctx.idempotency_key + "\\n")
    return {'worked': ctx.attempt}
"""


def test_a_cancel_waiting_in_the_inbox_goes_before_the_crashed_step(tmp_path):
    home = _crashed(tmp_path)
    (tmp_path / "resumable_actions.py").write_text(LEDGER_ACTION)  # the crash came before the action ran
    env = {**os.environ, "RATCHET_HOME": str(home)}
    cancel = subprocess.run([RATCHET, "cancel", "crashed", "--by", "alice"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert cancel.returncode == 0, cancel.stderr
    sup = _hooked(tmp_path, home, "--once")
    try:
        assert sup.wait(60) == 0, _log(tmp_path)
    finally:
        sup.kill()
        sup.wait(60)
    assert not (tmp_path / "modules.json").exists()  # no head start: the loop delivers the cancel first
    assert "cancelled" in _types(home, "crashed") and "step_succeeded" not in _types(home, "crashed")
    assert not (tmp_path / "ledger.txt").exists()  # the step never ran again


def test_a_damaged_sealing_key_stops_the_supervisor_after_its_head_start_with_nothing_journaled(tmp_path):
    home = _crashed(tmp_path)
    (home / "keys" / "home.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    before = (home / "runs" / "crashed.jsonl").read_bytes()
    sup = _hooked(tmp_path, home, "--once")
    try:
        assert sup.wait(60) == 1, _log(tmp_path)
    finally:
        sup.kill()
        sup.wait(60)
    assert (tmp_path / "modules.json").exists()  # the head start was taken: its worker met the key first
    errors = [line for line in _log(tmp_path).splitlines() if line.startswith("ratchet: error: ")]
    assert len(errors) == 1 and "home.key" in errors[0], _log(tmp_path)
    assert (home / "runs" / "crashed.jsonl").read_bytes() == before  # the worker failed before the run's lock


def _ours(tmp_path: Path) -> list[int]:
    """Processes still running this test's supervisor (its fork server and workers are forks of it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(tmp_path).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return pids


def test_a_sigterm_during_the_head_start_stops_gracefully(tmp_path):
    home = _crashed(tmp_path)
    # The signal comes while the recovered step is with its worker, before the loop exists.
    sup = _hooked(tmp_path, home, then="kill -TERM $PPID")
    try:
        assert sup.wait(60) == 0, _log(tmp_path)
    finally:
        sup.kill()
        sup.wait(60)
    assert (tmp_path / "modules.json").exists()
    assert "stopping on SIGTERM" in _log(tmp_path)
    # As in any graceful stop, a step the worker began finishes; one it had not begun (a worker
    # that got the stop before its job) is left for the next start, as the crash left it.
    types = _types(home, "crashed")
    assert types[2:] in ([], ["step_abandoned"],
                         ["step_abandoned", "step_started", "step_succeeded", "transition", "waiting", "sealed"]), types
    wait_for(lambda: not _ours(tmp_path), timeout=10, what="the fork server and workers to end")
    assert "Traceback" not in _log(tmp_path)
