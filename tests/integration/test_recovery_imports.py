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
