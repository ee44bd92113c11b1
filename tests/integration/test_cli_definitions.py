"""`ratchet validate` and `ratchet graph`, run as the installed console script (a real
subprocess), on the shipped machines and the broken definitions of the unit tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from engine.definition.loader import load_file
from journal import Escalated, FileStore, RunStarted, Transition

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = REPO / "tests" / "unit" / "definitions"
RATCHET = shutil.which("ratchet", path=str(Path(sys.prefix) / "bin")) or shutil.which("ratchet")


def ratchet(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    assert RATCHET, "the `ratchet` console script is not installed"
    return subprocess.run([RATCHET, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_validate_accepts_every_shipped_machine():
    paths = sorted(str(p.relative_to(REPO)) for p in (REPO / "machines").glob("*"))  # machines/*
    result = ratchet("validate", *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("renewal_review.yaml", "customer_onboarding.yaml", "invoice.py"):
        assert re.search(rf"^machines/{re.escape(name)}: ok \(", result.stdout, re.M)
    assert "renewal_actions.py: skipped" in result.stderr  # action modules beside the machines


def test_validate_reports_every_broken_definition_as_file_line_message():
    folder = DEFINITIONS / "broken"
    result = ratchet("validate", "tests/unit/definitions/broken")
    assert result.returncode == 1
    out = result.stdout.splitlines()
    for path in sorted(folder.glob("*.yaml")):
        for line, text in re.findall(r"^# expect: (\d+): (.*)$", path.read_text(), re.M):
            want = f"tests/unit/definitions/broken/{path.name}:{line}: {text}"
            assert any(o.startswith(want) for o in out), f"missing: {want}\n" + result.stdout


def test_validate_names_the_object_in_python_machines():
    result = ratchet("validate", "tests/unit/definitions/broken_py/dict_machine.py")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(
        "tests/unit/definitions/broken_py/dict_machine.py: states.charge.retry.backoff: bad duration '2x'")


def test_warnings_do_not_fail_validation():
    result = ratchet("validate", "tests/unit/definitions/warnings/timeout_unhandled.yaml")
    assert result.returncode == 0
    assert ":8: warning: states.review.timeout:" in result.stdout


def test_strict_makes_warnings_fail_and_still_prints_them():
    endless = "tests/unit/definitions/warnings/endless_wait.yaml"
    relaxed = ratchet("validate", endless, "machines/renewal_review.yaml")
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr
    assert f"{endless}:6: warning: states.review: waiting state 'review' has no timeout" in relaxed.stdout
    assert f"{endless}: ok (" in relaxed.stdout
    strict = ratchet("validate", "--strict", endless, "machines/renewal_review.yaml")
    assert strict.returncode == 1
    assert f"{endless}:6: warning: " in strict.stdout and f"{endless}: ok" not in strict.stdout
    assert f"{endless}: 1 warning(s), which fail under --strict" in strict.stdout
    assert "machines/renewal_review.yaml: ok (" in strict.stdout  # a clean file still passes
    assert ratchet("validate", "--strict", "machines/renewal_review.yaml").returncode == 0


def test_validate_with_nothing_to_validate_fails(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    result = ratchet("validate", str(tmp_path / "notes.txt"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ratchet: error: no machine definitions")
    assert ratchet("validate", str(tmp_path / "absent.yaml")).returncode == 1


def test_graph_prints_a_mermaid_state_diagram():
    result = ratchet("graph", "machines/renewal_review.yaml")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines[0] == "stateDiagram-v2"
    assert "[*] --> draft" in lines and "sent --> [*]" in lines
    assert "review --> send: approve" in lines
    # Every line is a statement Mermaid knows: a comment, a state, an edge or a style.
    statement = re.compile(r"^(%% .*|[a-z][a-z0-9_]*: .+|(\[\*\]|[a-z][a-z0-9_]*) --> "
                           r"(\[\*\]|[a-z][a-z0-9_]*)(: [a-z0-9_ ]+)?|classDef \w+ .+|class \w+ \w+)$")
    assert all(statement.match(line) for line in lines[1:]), result.stdout


def test_graph_finds_a_machine_by_name_and_refuses_unknown_ones():
    assert ratchet("graph", "invoice").stdout.startswith("stateDiagram-v2\n")
    result = ratchet("graph", "invoce")
    assert result.returncode == 1
    assert result.stderr == "ratchet: error: invoce: no machine named 'invoce' in machines/ (did you mean 'invoice'?)\n"


def _start_run(home: Path, run_id: str, *later) -> None:
    machine = load_file(REPO / "machines" / "renewal_review.yaml")
    with FileStore(home).writer(run_id, create=True) as writer:
        writer.append(RunStarted(run_id=run_id, machine=machine.name, version=machine.spec.version,
                                 definition=machine.definition, definition_hash=machine.hash,
                                 source=str(machine.source)))
        for record in later:
            writer.append(record)


def test_graph_marks_the_current_state_of_a_run(tmp_path):
    _start_run(tmp_path, "run-1", Transition(trigger="ok", source="draft", dest="review"))
    result = ratchet("--home", str(tmp_path), "graph", "renewal_review", "--run", "run-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].strip() == "class review current"


def test_graph_of_a_run_needs_no_machine_and_draws_what_the_run_pinned(tmp_path):
    _start_run(tmp_path, "run-1", Transition(trigger="ok", source="draft", dest="review"))
    named = ratchet("--home", str(tmp_path), "graph", "renewal_review", "--run", "run-1")
    alone = ratchet("--home", str(tmp_path), "graph", "--run", "run-1", cwd=tmp_path)  # no ./machines here
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout == named.stdout and alone.stdout.splitlines()[-1].strip() == "class review current"
    nothing = ratchet("graph")
    assert nothing.returncode == 2
    assert nothing.stderr == "ratchet: error: give MACHINE, or --run ID to draw the definition a run pinned; " \
                             "see 'ratchet graph --help'\n"


def test_graph_marks_an_escalated_run_and_checks_the_machine(tmp_path):
    _start_run(tmp_path, "run-2", Transition(trigger="ok", source="draft", dest="review"),
               Escalated(state="review", reason="timeout"))
    result = ratchet("--home", str(tmp_path), "graph", "renewal_review", "--run", "run-2")
    assert result.stdout.splitlines()[-1].strip() == "class review escalated"
    wrong = ratchet("--home", str(tmp_path), "graph", "invoice", "--run", "run-2")
    assert wrong.returncode == 1 and "follows machine 'renewal_review', not 'invoice'" in wrong.stderr
    missing = ratchet("--home", str(tmp_path), "graph", "invoice", "--run", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("ratchet: error: ")


def test_validate_in_process_with_click_runner(monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["validate", "machines/renewal_review.yaml",
                                       "tests/unit/definitions/broken/unknown_dest.yaml"])
    assert result.exit_code == 1
    assert "machines/renewal_review.yaml: ok" in result.output
    assert ("tests/unit/definitions/broken/unknown_dest.yaml:10: transitions[1].dest: "
            "transition 'approve' targets unknown state 'sned' (did you mean 'send'?)") in result.output


def test_validate_of_a_folder_never_runs_a_script_that_defines_no_machine(tmp_path: Path):
    marker = tmp_path / "it-ran"
    (tmp_path / "cleanup.py").write_text(f"open({str(marker)!r}, 'w').write('oops')\n")
    result = ratchet("validate", str(tmp_path))
    assert result.returncode == 1 and "cleanup.py: skipped" in result.stderr
    assert not marker.exists()
