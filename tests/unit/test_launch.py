"""The console script reads a plain `ratchet supervise` command line itself (engine.cli.launch),
without click: for every command line it takes, click would have called the same start
(engine.cli.supervising.supervise) with the same values; anything else goes to click.

Command lines are generated (hypothesis) from the tokens both sides know and values in and
out of range, with RATCHET_HOME and RATCHET_STORE set, empty or unset; click runs for real
(CliRunner), only the start it calls is replaced by a recorder.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.cli import launch, supervising
from engine.cli.app import main

PG = "postgresql://nobody@127.0.0.1:9/none"
SIGNATURE = inspect.signature(supervising.supervise)
HOMES = ["home", "afile", "missing", "", "-x", "supervise"]
NUMBERS = ["0", "1", "2", "4", "04", "256", "257", "0.1", "0.09", "0.5", "1.5", "5.", ".5", "3600", "3601",
           "86400", "86401", "-1", "+3", "1e3", " 2", "x", "", "--once"]
STORES = ["file:", PG, "", "-x"]
GROUP = [["--home", h] for h in HOMES] + [["--store", s] for s in STORES] + [["--debug"], ["--bogus"], ["-h"],
                                                                            ["--home"], ["--home=home"]]
COMMAND = ([["--once"], ["--quiet"], ["--help"], ["--metrics-port", "0"], ["--workers=3"], ["--debug"], ["--rescan"]]
           + [[name, n] for name in ("--workers", "--rescan", "--grace", "--job-timeout") for n in NUMBERS]
           + [["--home", h] for h in HOMES] + [["--store", s] for s in STORES])
ENV = st.sampled_from([None, "", "home", "afile", "missing"])


PLAIN_GROUP = [["--home", "home"], ["--home", "missing"], ["--store", "file:"], ["--store", PG], ["--debug"]]
PLAIN_COMMAND = ([["--once"], ["--quiet"], ["--home", "home"], ["--store", PG]]
                 + [[name, n] for name in ("--workers", "--rescan", "--grace", "--job-timeout") for n in NUMBERS[:16]])


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    plain = draw(st.booleans())  # half of them from the options and values a user would type
    group = draw(st.lists(st.sampled_from(PLAIN_GROUP if plain else GROUP), max_size=3))
    command = draw(st.lists(st.sampled_from(PLAIN_COMMAND if plain else COMMAND), max_size=5))
    name = draw(st.sampled_from(["supervise", "supervise", "supervise", "status", "superviser"]))
    return [token for option in group for token in option] + [name] + [t for option in command for t in option]


@pytest.fixture
def place(tmp_path, monkeypatch) -> Path:
    """A folder holding a home, a regular file, and no `missing`; the working directory."""
    (tmp_path / "home").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / ".ratchet").mkdir()  # the default home
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _through_click(argv: list[str], env: dict[str, str | None], monkeypatch) -> tuple[int, dict | None]:
    """Run click's command line for real; what `supervise` was called with (None: not called)."""
    calls: list[dict] = []

    def record(home: Path, **options: object) -> int:
        calls.append({"home": home, "store": os.environ.get("RATCHET_STORE"), **options})
        return 0

    monkeypatch.setattr(supervising, "supervise", record)
    result = CliRunner().invoke(main, argv, env=env)
    return result.exit_code, calls[0] if calls else None


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=command_lines(), ratchet_home=ENV, ratchet_store=st.sampled_from([None, "", "file:", PG]))
def test_every_command_line_read_without_click_is_read_the_same_by_click(place, monkeypatch, argv, ratchet_home,
                                                                         ratchet_store):
    env = {"RATCHET_HOME": ratchet_home, "RATCHET_STORE": ratchet_store}
    environ = {k: v for k, v in env.items() if v is not None}
    line = launch.read_supervise(argv, environ)
    event("read without click" if line is not None else "left to click")
    if line is None:
        return  # click's, whatever it makes of it
    code, call = _through_click(argv, env, monkeypatch)
    assert code == 0 and call is not None, (argv, env, code)
    store = line.store if line.store else environ.get("RATCHET_STORE")
    # What the console script passes, and the start's defaults for what it does not (e.g. `metrics`).
    defaults = {name: p.default for name, p in SIGNATURE.parameters.items() if p.default is not p.empty}
    assert call == {**defaults, "home": line.home, "store": store, "debug": line.debug, "once": line.once,
                    "workers": line.workers, "rescan": line.rescan, "grace": line.grace,
                    "job_timeout": line.job_timeout, "quiet": line.quiet}, (argv, env)


@pytest.mark.parametrize("argv", [
    ["supervise"], ["supervise", "--once"], ["--home", "home", "supervise", "--workers", "4"],
    ["supervise", "--home", "home", "--once", "--quiet", "--rescan", "0.5", "--grace", "0", "--job-timeout", "60"],
    ["--debug", "--store", "file:", "supervise"], ["--home", "missing", "--store", PG, "supervise"],
])
def test_the_usual_command_lines_start_without_click(place, argv):
    assert launch.read_supervise(argv, {}) is not None


@pytest.mark.parametrize("argv", [
    ["supervise", "--help"], ["--help"], ["status"], ["supervise", "--workers", "0"], ["supervise", "--workers=3"],
    ["supervise", "--once", "--once"], ["--home", "missing", "supervise"], ["--home", "afile", "supervise"],
    ["supervise", "--metrics-port", "9464"], ["supervise", "--bogus"], ["supervise", "--home", ""],
])
def test_anything_else_goes_to_click(place, argv):
    assert launch.read_supervise(argv, {}) is None


def _console(place: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return subprocess.run([sys.executable, "-c", "from engine.cli.launch import run; run()", *argv], cwd=place,
                          env=env, capture_output=True, text=True, timeout=60)


def test_click_says_the_errors_of_what_it_is_handed(place):
    out = _console(place, "supervise", "--workers", "0")
    assert out.returncode == 2
    assert out.stderr == ("ratchet: error: Invalid value for '--workers': 0 is not in the range 1<=x<=256; "
                          "see 'ratchet supervise --help'\n")
    out = _console(place, "--home", "missing", "supervise")
    assert out.returncode == 1 and out.stderr.startswith(f"ratchet: error: no Ratchet home at {place / 'missing'}")
    out = _console(place, "supervise", "--help")
    assert out.returncode == 0 and out.stdout.startswith("Usage: ratchet supervise [OPTIONS]")


def test_an_error_of_the_started_supervisor_is_said_as_click_says_it(place):
    (place / "home" / "inbox").symlink_to(place)  # refused before anything starts (engine.home.Home.check_inbox)
    fast = _console(place, "--home", "home", "supervise", "--once")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    slow = subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", "--home", "home",
                           "supervise", "--once"], cwd=place, env=env, capture_output=True, text=True, timeout=60)
    assert fast.returncode == slow.returncode == 1, (fast.stderr, slow.stderr)
    error = fast.stderr.splitlines()[-1]
    assert error == slow.stderr.splitlines()[-1] and error.startswith("ratchet: error: home/inbox: is a symlink")
    assert "Traceback" not in fast.stderr
