"""Who started a run, proven: with a people.yaml, `--by` must be a person it gives the Unix
user running the command. Else anyone could start a run in a colleague's name and then
approve it themselves past a `not_starter` (four eyes) wait."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import Ratchet
from engine.cli import main
from engine.trust.people import StarterError

ROOT = Path(__file__).resolve().parents[2]
ME = pwd.getpwuid(os.geteuid()).pw_name  # the Unix user running the tests (root in CI)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)  # ./machines: the shipped renewal_review
    monkeypatch.setenv("RATCHET_CLOCK_FILE", str(tmp_path / "clock"))
    (tmp_path / "clock").write_text("2026-11-30T09:00:00Z")
    root = tmp_path / "home"
    root.mkdir()
    return root


def ratchet(home: Path, *args: str):
    return CliRunner().invoke(main, ["--home", str(home), *args])


def starter_of(home: Path, run_id: str) -> str | None:
    first = (home / "runs" / f"{run_id}.jsonl").read_bytes().splitlines()[0]
    return json.loads(first).get("by")


def test_a_start_in_someone_elses_name_is_refused_and_creates_nothing(home: Path) -> None:
    (home / "people.yaml").write_text(f"alice: {{unix_user: {ME}}}\nbob: {{unix_user: nobody}}\n")
    for command in ("start", "run"):
        forged = ratchet(home, command, "renewal_review", "--id", "r1", "--by", "bob")
        assert forged.exit_code == 1
        assert forged.output.splitlines() == [
            f"ratchet: error: --by bob: not verified: this process runs as Unix user '{ME}', whom people.yaml "
            "gives as 'alice'; hint: leave --by out, or start the run as bob's Unix user"]
        assert not (home / "runs" / "r1.jsonl").exists()
    with pytest.raises(StarterError, match="--by bob: not verified"):  # the Python API: the same rule
        Ratchet(home).start("renewal_review", id="r1", by="bob")
    assert not (home / "runs" / "r1.jsonl").exists()
    assert ratchet(home, "start", "renewal_review", "--id", "r1", "--by", "alice").exit_code == 0
    assert ratchet(home, "start", "renewal_review", "--id", "r2").exit_code == 0
    assert starter_of(home, "r1") == starter_of(home, "r2") == "alice"  # the name people.yaml gives this user


def test_a_broken_people_file_verifies_no_claimed_starter(home: Path) -> None:
    (home / "people.yaml").write_text("alice: {unix_user: 7}\n")
    out = ratchet(home, "start", "renewal_review", "--id", "r1", "--by", "alice")
    assert out.exit_code == 1 and "--by alice: cannot be verified while the people file is broken: " in out.output
    assert "people.yaml:1: alice.unix_user" in out.output
    assert not (home / "runs" / "r1.jsonl").exists()


def test_an_open_home_takes_any_name(home: Path) -> None:
    assert ratchet(home, "start", "renewal_review", "--id", "r1", "--by", "bob").exit_code == 0
    assert starter_of(home, "r1") == "bob"
