"""User mistakes on every command: one line on stderr, `ratchet: error: ...`, exit 1, no traceback.

Usage mistakes (unknown command or option, missing argument) are click's: exit 2. Also
checks that every command's --help has a summary and an Example, and that --home works
after the command's name. Through click's CliRunner, and a few as the real console script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")
RENEWAL = str(ROOT / "machines" / "renewal_review.yaml")
BROKEN = str(ROOT / "tests" / "unit" / "definitions" / "broken" / "many_errors.yaml")
COMMANDS = ("validate", "graph", "start", "run", "supervise", "status", "tail",
            "send", "approve", "reject", "resolve", "cancel", "upgrade", "verify", "archive", "keys",
            "export", "import", "db", "report", "ui")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with run `r1` waiting in 'review' and run `done` finished ('rejected')."""
    folder = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("RATCHET_")]:
            mp.delenv(name)
        mp.setenv("RATCHET_LEDGER", str(folder / "ledger.jsonl"))
        for run_id in ("r1", "done"):
            assert cli(folder / "home", "run", RENEWAL, "--id", run_id).exit_code == 0
        assert cli(folder / "home", "reject", "done", "--by", "alice").exit_code == 0
        assert cli(folder / "home", "supervise", "--once").exit_code == 0
    return folder / "home"


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template home for each test."""
    shutil.copytree(template, tmp_path / "home")
    return tmp_path / "home"


def cli(home: Path, *args: str):
    return CliRunner().invoke(main, ["--home", str(home), *args])


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("ratchet: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("args, fragment", [
    # an unknown run
    (["status", "nope"], "no run 'nope'"),
    (["tail", "nope"], "no run 'nope'"),
    (["verify", "nope"], "no run 'nope'"),
    (["graph", RENEWAL, "--run", "nope"], "no run 'nope'"),
    (["send", "nope", "approve", "--by", "alice"], "no run 'nope'"),
    (["approve", "nope", "--by", "alice"], "no run 'nope'"),
    (["reject", "nope", "--by", "alice"], "no run 'nope'"),
    (["resolve", "nope", "retry", "--by", "ops"], "no run 'nope'"),
    # an id that is not a safe file name
    (["status", "../x"], "invalid run id '../x'"),
    (["tail", "../x"], "invalid run id '../x'"),
    (["verify", "../x"], "invalid run id '../x'"),
    (["graph", RENEWAL, "--run", "../x"], "invalid run id '../x'"),
    (["start", RENEWAL, "--id", "../x"], "invalid run id '../x'"),
    (["run", RENEWAL, "--id", "../x"], "invalid run id '../x'"),
    (["send", "../x", "approve", "--by", "alice"], "invalid run id '../x'"),
    (["approve", "../x", "--by", "alice"], "invalid run id '../x'"),
    (["reject", "../x", "--by", "alice"], "invalid run id '../x'"),
    (["resolve", "../x", "abort", "--by", "ops"], "invalid run id '../x'"),
    # a machine that does not exist, or whose definition is wrong
    (["start", "nope"], "no machine named 'nope'"),
    (["run", "nope"], "no machine named 'nope'"),
    (["graph", "nope"], "no machine named 'nope'"),
    (["start", BROKEN], "(and 4 more problems; see 'ratchet validate')"),
    (["graph", BROKEN], "many_errors.yaml:13: "),
    # bad KEY=VALUE
    (["start", RENEWAL, "--input", "customer"], "--input 'customer': expected KEY=VALUE"),
    (["run", RENEWAL, "--input", "=acme"], "--input '=acme': expected KEY=VALUE"),
    (["send", "r1", "approve", "--by", "alice", "--data", "x"], "--data 'x': expected KEY=VALUE"),
    # triggers and senders
    (["send", "r1", "frob", "--by", "alice"], "has no trigger 'frob'; its triggers: ok, approve, revise, reject"),
    (["resolve", "r1", "skip", "frob", "--by", "ops"], "has no trigger 'frob'"),
    (["send", "r1", "Approve!", "--by", "alice"], "trigger 'Approve!': use lowercase letters"),
    (["approve", "r1", "--by", "a b"], "by 'a b': use letters, digits"),
    (["resolve", "r1", "skip", "--by", "ops"], "resolve skip needs the TRIGGER"),
    (["resolve", "r1", "abort", "approve", "--by", "ops"], "resolve abort takes no TRIGGER"),
    (["approve", "done", "--by", "alice"], "run 'done' is finished (in 'rejected')"),
    (["resolve", "done", "retry", "--by", "ops"], "run 'done' is finished"),
    # a run of another machine under the same id
    (["start", str(ROOT / "machines" / "invoice.py"), "--id", "r1"], "already exists with machine 'renewal_review'"),
])
def test_mistakes_are_one_line_and_exit_1(home: Path, args: list[str], fragment: str) -> None:
    inbox_before = sorted(p.name for p in (home / "inbox").iterdir())
    assert_one_line_error(cli(home, *args), fragment)
    assert sorted(p.name for p in (home / "inbox").iterdir()) == inbox_before  # nothing written


@pytest.mark.parametrize("args", [
    ["status"], ["tail", "r1"], ["verify"], ["graph", RENEWAL, "--run", "r1"],
    ["send", "r1", "approve", "--by", "alice"], ["approve", "r1", "--by", "alice"],
    ["reject", "r1", "--by", "alice"], ["resolve", "r1", "retry", "--by", "ops"],
    ["supervise", "--once"], ["archive", "--finished-before", "1d"],
])
def test_a_missing_home_is_a_one_line_error_and_is_not_created(tmp_path: Path, args: list[str]) -> None:
    assert_one_line_error(cli(tmp_path / "nowhere", *args),
                          f"no Ratchet home at {tmp_path / 'nowhere'}; create one with 'ratchet start'/"
                          "'ratchet run', or point --home/RATCHET_HOME at it")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("args, fragment", [
    (["run", "nosuch"], "no machine named 'nosuch'"),
    (["start", "nosuch"], "no machine named 'nosuch'"),
    (["start", BROKEN], "(and 4 more problems"),
    (["run", RENEWAL, "--id", "../x"], "invalid run id '../x'"),
    (["run", RENEWAL, "--input", "oops"], "--input 'oops': expected KEY=VALUE"),
])
def test_a_command_that_fails_leaves_no_home_behind(tmp_path: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(cli(tmp_path / "new", *args), fragment)
    assert not (tmp_path / "new").exists()


def test_the_first_run_creates_the_home_with_its_journal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RATCHET_LEDGER", str(tmp_path / "ledger.jsonl"))
    assert cli(tmp_path / "a" / "new", "start", RENEWAL, "--id", "r1").exit_code == 0
    assert {"runs", "inbox"} <= {p.name for p in (tmp_path / "a" / "new").iterdir()}  # the whole layout
    assert cli(tmp_path / "a" / "new", "approve", "r1", "--by", "alice").exit_code == 0


def test_validate_reports_a_missing_file_and_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and result.stdout == f"{tmp_path / 'nope.yaml'}: no such file or folder\n"


@pytest.mark.parametrize("args, fragment", [
    (["frob"], "No such command 'frob'"),
    (["status", "--bogus"], "No such option '--bogus'"),
    (["tail"], "Missing argument 'ID'"),
    (["send", "r1", "approve"], "Missing option '--by'"),
    (["resolve", "r1", "frob", "--by", "ops"], "'frob' is not one of 'retry', 'skip', 'abort'"),
    (["supervise", "--workers", "0"], "--workers"),
    (["--bogus", "status"], "No such option '--bogus'"),
    (["archive"], "Missing option '--finished-before'"),
])
def test_usage_mistakes_exit_2_in_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = cli(tmp_path, *args)
    assert result.exit_code == 2 and fragment in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("ratchet: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.rstrip().endswith(" --help'") and result.stdout == ""


def test_home_may_follow_the_command_and_overrides_the_environment(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("RATCHET_HOME", str(home.parent / "elsewhere"))
    result = CliRunner().invoke(main, ["status", "r1", "--home", str(home), "--json"])
    assert result.exit_code == 0 and '"state": "review"' in result.stdout


def test_filters_matching_nothing_say_so(home: Path) -> None:
    result = cli(home, "status", "--state", "nowhere")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == "no runs match the filters\n"


def test_every_command_has_a_summary_and_an_example() -> None:
    group = CliRunner().invoke(main, ["--help"])
    assert group.exit_code == 0 and "Exit codes" in group.stdout and "RATCHET_HOME" in group.stdout
    listed = [line.split()[0] for line in group.stdout.split("Commands:\n")[1].splitlines() if line.strip()]
    assert listed == list(COMMANDS)
    for command in COMMANDS:
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0, command
        summary = result.stdout.split("\n\n")[1].strip()
        assert summary.endswith(".") and "\n" not in summary, (command, summary)
        assert "\n  Example:\n    ratchet " in result.stdout, command
        assert "--home" in result.stdout, command
        short = next(line for line in group.stdout.splitlines() if line.strip().startswith(command + " "))
        assert not short.endswith("..."), short  # the summary fits the command list


# --- the real console script ----------------------------------------------------------


def ratchet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([RATCHET, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return {**env, "RATCHET_HOME": str(tmp_path / "home"), "RATCHET_LEDGER": str(tmp_path / "ledger.jsonl")}


def test_console_script_mistakes_are_one_line(clean_env: dict[str, str], tmp_path: Path) -> None:
    out = ratchet("status", env=clean_env)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (f"ratchet: error: no Ratchet home at {tmp_path / 'home'}; create one with "
                          "'ratchet start'/'ratchet run', or point --home/RATCHET_HOME at it\n")
    assert ratchet("run", "renewal_review", "--id", "r1", env=clean_env).returncode == 0
    for args, fragment in [
        (["tail", "../x"], "invalid run id '../x'"),
        (["send", "r1", "frob", "--by", "alice"], "has no trigger 'frob'"),
        (["start", BROKEN], "(and 4 more problems; see 'ratchet validate')"),
        (["start", "renewal_review", "--input", "oops"], "--input 'oops': expected KEY=VALUE"),
        (["graph", "nope"], "no machine named 'nope'"),
    ]:
        out = ratchet(*args, env=clean_env)
        assert (out.returncode, out.stdout) == (1, ""), (args, out.stderr)
        assert out.stderr.startswith("ratchet: error: ") and out.stderr.count("\n") == 1, out.stderr
        assert fragment in out.stderr, out.stderr


def test_console_script_usage_error_exits_2_and_debug_shows_the_traceback(clean_env: dict[str, str]) -> None:
    out = ratchet("approve", "r1", env=clean_env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr == "ratchet: error: Missing option '--by'; see 'ratchet approve --help'\n"
    out = ratchet("--debug", "start", BROKEN, env=clean_env)
    assert out.returncode == 1 and "Traceback" in out.stderr and "DefinitionError" in out.stderr


def test_a_reader_that_goes_away_is_not_an_error(clean_env: dict[str, str]) -> None:
    """`ratchet status | head -1`: once the reader has gone, ratchet stops writing and says
    nothing (it said "ratchet: error: [Errno 32] Broken pipe"); exit 1, as click has it."""
    assert ratchet("run", "renewal_review", "--id", "r1", env=clean_env).returncode == 0
    for args in (["status"], ["tail", "r1"], ["status", "--json"]):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first write: deterministic
        try:
            done = subprocess.run([RATCHET, *args], stdout=write, stderr=subprocess.PIPE, text=True,
                                  env=clean_env, cwd=ROOT, timeout=60)
        finally:
            os.close(write)
        assert done.stderr == "" and done.returncode in (0, 1), (args, done.returncode, done.stderr)
