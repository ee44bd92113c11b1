"""The commands' edges: `--help` stays light, a missing extra is one line, a report of an
archived run, `-o -`."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from ui_harness import ROOT, Cli


def python(code: str, *, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **({"RATCHET_HOME": str(home)} if home else {})})


def test_help_loads_no_web_stack() -> None:
    heavy = ("jinja2", "starlette", "uvicorn", "engine.view.report")
    done = python("import sys\nfrom engine.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                  f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]")


def test_without_the_ui_extra_each_command_says_how_to_install_it(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    for blocked, command in (("starlette", "ui"), ("jinja2", "report r1")):
        code = (f"import sys\nsys.modules[{blocked!r}] = None  # as if not installed\n"
                f"from engine.cli import main\nmain({command.split()!r}, prog_name='ratchet')")
        done = python(code, home=tmp_path / "home")
        assert done.returncode == 1
        assert done.stderr == (f"ratchet: error: ratchet {command.split()[0]} needs {blocked}" if blocked == "starlette"
                               else "ratchet: error: ratchet report needs Jinja2") + \
            ", from the 'ui' extra: pip install 'ratchet[ui]'\n"


def test_an_archived_run_is_reported_from_the_archive(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.at("2026-03-02T09:00:00Z")("run", "invoice", "--input", "customer=acme", "--id", "inv-1")
    cli.at("2026-04-02T09:00:00Z")("archive", "--finished-before", "30d")
    assert not (cli.home / "runs" / "inv-1.jsonl").exists()
    page = cli("report", "inv-1", "-o", "-").stdout
    assert page.startswith("<!doctype html>") and "Run inv-1" in page and "archived" in page
    assert "verified" in page and "archive" in page  # verified from the archive


def test_a_tampered_journal_is_reported_as_damaged_page_and_exit_1(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.at("2026-03-02T09:00:00Z")("run", "invoice", "--input", "customer=acme", "--id", "inv-1")
    journal = cli.home / "runs" / "inv-1.jsonl"  # edited behind the store's back, as a careless hand would
    lines = journal.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"attempt":1', b'"attempt":2')  # still a valid record: the chain breaks at 4
    journal.write_bytes(b"\n".join(lines))

    done = cli("report", "inv-1", "-o", str(tmp_path / "inv-1.html"), check=False)

    assert done.returncode == 1
    assert done.stderr.startswith("ratchet: error: ") and ":4: hash chain broken" in done.stderr
    assert done.stderr.count("\n") == 1
    page = (tmp_path / "inv-1.html").read_text()
    assert "DAMAGED" in page and "line 4: hash chain broken" in page
    assert 'data-seq="3"' in page  # the records are still shown, the edited one included


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = python(f"from engine.cli import main\nmain(['ui', '--port', '{port}'], prog_name='ratchet')",
                      home=tmp_path / "home")
    assert done.returncode == 1
    assert done.stderr == (f"ratchet: error: 127.0.0.1:{port}: cannot listen (Address already in use); "
                           "choose another --port, or stop what listens there\n")
