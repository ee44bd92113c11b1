"""`ratchet archive` on a home of real journals (tests/fixtures/journals), and reading the archive.

The fixtures' last records are from 2026-11-27 to 2026-12-08; the clock (RATCHET_CLOCK_FILE)
stands at 2026-12-28 09:00Z, so `--finished-before 30d` means "ended before 2026-11-28 09:00Z".
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from journal import Cancelled, FileStore, RunFinished

from damage import cut_at
from journal_builders import run_started

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
ENDED_BEFORE_CUTOFF = ["clause-initech", "contract-acme", "inv-1001", "inv-1002", "inv-1003", "renewal-acme",
                       "renewal-hooli", "renewal-vandelay", "renewal-wonka"]
ENDED_SINCE = ["onb-stark", "onb-wayne", "onb-zeta", "renewal-globex", "renewal-initech", "renewal-massive",
               "renewal-umbrella"]
NOT_ENDED = ["inv-1004", "onb-tyrell", "renewal-cyberdyne", "renewal-soylent"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True)
    for fixture in FIXTURES.glob("*.jsonl"):
        run_id = json.loads(fixture.read_bytes().split(b"\n")[0])["run_id"]
        shutil.copy(fixture, runs / f"{run_id}.jsonl")
        if fixture.with_suffix(".pub").exists():  # a sealed journal: its home's public key and latest seal
            (tmp_path / "home" / "keys").mkdir(exist_ok=True)
            shutil.copy(fixture.with_suffix(".pub"), tmp_path / "home" / "keys" / "home.pub")
            (tmp_path / "home" / "seals").mkdir(exist_ok=True)
            (tmp_path / "home" / "seals" / f"{run_id}.json").write_bytes(fixture.read_bytes().splitlines()[-1])
    (tmp_path / "clock").write_text("2026-12-28T09:00:00Z")
    for name in ("RATCHET_HOME", "RATCHET_CRASH_AT", "RATCHET_CRASH_COUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RATCHET_CLOCK_FILE", str(tmp_path / "clock"))
    return tmp_path / "home"


def cli(home: Path, *args: str):
    return CliRunner().invoke(main, ["--home", str(home), *args])


def names(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []


def test_only_runs_that_ended_before_the_age_are_archived_and_a_dry_run_moves_nothing(home: Path) -> None:
    every = sorted(ENDED_BEFORE_CUTOFF + ENDED_SINCE + NOT_ENDED)
    dry = cli(home, "archive", "--finished-before", "30d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert [line.split(":")[0] for line in dry.stdout.splitlines()] == ENDED_BEFORE_CUTOFF
    assert "renewal-acme: would archive (finished in 'sent', 12 records)" in dry.stdout
    assert dry.stderr == ("would archive 9 runs; left in runs/: 4 not ended, 7 ended since "
                          "2026-11-28 09:00Z, 0 not archivable\n")
    assert names(home / "runs", ".jsonl") == every and not (home / "archive").exists()

    done = cli(home, "archive", "--finished-before", "30d")
    assert done.exit_code == 0, done.output
    assert f"renewal-acme: archived (finished in 'sent', 12 records) to {home / 'archive'}/renewal-acme.jsonl.gz" \
        in done.stdout
    assert names(home / "archive", ".jsonl.gz") == ENDED_BEFORE_CUTOFF
    assert names(home / "runs", ".jsonl") == sorted(ENDED_SINCE + NOT_ENDED)
    for run_id in ENDED_BEFORE_CUTOFF:  # the same bytes, compressed
        fixture = next(p for p in FIXTURES.glob("*.jsonl") if f'"run_id":"{run_id}"' in p.read_text())
        assert gzip.decompress((home / "archive" / f"{run_id}.jsonl.gz").read_bytes()) == fixture.read_bytes()

    older = cli(home, "archive", "--finished-before", "60d")  # nothing that old is left
    assert older.exit_code == 0 and older.stdout == ""
    cancelled_too = cli(home, "archive", "--finished-before", "1d")
    assert names(home / "archive", ".jsonl.gz") == sorted(ENDED_BEFORE_CUTOFF + ENDED_SINCE)  # cancelled included
    assert names(home / "runs", ".jsonl") == NOT_ENDED, cancelled_too.output


def test_tail_verify_and_status_read_archived_runs(home: Path) -> None:
    before = {args: cli(home, *args).stdout for args in [("tail", "renewal-acme"), ("tail", "renewal-acme", "--json")]}
    assert cli(home, "archive", "--finished-before", "30d").exit_code == 0
    for args, text in before.items():
        assert cli(home, *args).stdout == text  # the same story, the same bytes
    follow = cli(home, "tail", "-f", "renewal-acme")  # an archived run has ended: no waiting
    assert follow.exit_code == 0 and follow.stdout == before[("tail", "renewal-acme")]

    live = cli(home, "status", "--json")
    assert sorted(r["run_id"] for r in json.loads(live.stdout)) == sorted(ENDED_SINCE + NOT_ENDED)
    every = json.loads(cli(home, "status", "--all", "--json").stdout)
    assert sorted(r["run_id"] for r in every) == sorted(ENDED_BEFORE_CUTOFF + ENDED_SINCE + NOT_ENDED)
    acme = next(r for r in every if r["run_id"] == "renewal-acme")
    assert (acme["status"], acme["state"], acme["archived"], acme["records"]) == ("finished", "sent", True, 12)
    table = cli(home, "status", "--all").stdout
    assert any(line.startswith("renewal-acme ") and "finished (archived)" in line for line in table.splitlines())
    one = json.loads(cli(home, "status", "renewal-acme", "--json").stdout)
    assert [(r["run_id"], r["archived"]) for r in one] == [("renewal-acme", True)]

    checked = cli(home, "verify", "--all")
    assert checked.exit_code == 0
    assert "renewal-acme (archived): ok (12 records; unsealed)" in checked.stdout  # written before sealing
    assert "renewal-soylent: ok (" in checked.stdout
    assert "(archived)" not in cli(home, "verify").stdout  # without --all: the runs only
    assert cli(home, "verify", "inv-1001").stdout == "inv-1001 (archived): ok (14 records; unsealed)\n"


def test_an_archived_id_starts_no_new_run(home: Path) -> None:
    assert cli(home, "archive", "--finished-before", "30d").exit_code == 0
    result = cli(home, "start", str(Path(__file__).parents[2] / "machines" / "renewal_review.yaml"),
                 "--id", "renewal-acme")
    assert result.exit_code == 1 and result.stderr.startswith("ratchet: error: ")
    assert "run 'renewal-acme' is archived; choose another id" in result.stderr
    assert not (home / "runs" / "renewal-acme.jsonl").exists()


def test_a_damaged_journal_is_not_archived_and_fails_the_command(home: Path) -> None:
    journal = home / "runs" / "renewal-acme.jsonl"
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join(lines[:3] + [lines[3].replace(b'"ok"', b'"OK"')] + lines[4:]))
    result = cli(home, "archive", "--finished-before", "30d")
    assert result.exit_code == 1
    assert f"renewal-acme: not archived: {journal}:5: hash chain broken" in result.stdout
    assert journal.exists() and "renewal-acme" not in names(home / "archive", ".jsonl.gz")
    assert names(home / "archive", ".jsonl.gz") == [r for r in ENDED_BEFORE_CUTOFF if r != "renewal-acme"]


def test_a_damaged_archive_is_reported_by_every_reader(home: Path) -> None:
    assert cli(home, "archive", "--finished-before", "30d").exit_code == 0
    packed = home / "archive" / "renewal-acme.jsonl.gz"
    cut_at(packed, packed.stat().st_size // 2)
    checked = cli(home, "verify", "renewal-acme")
    assert checked.exit_code == 1 and f"{packed}:" in checked.stdout and "it is damaged" in checked.stdout
    told = cli(home, "tail", "renewal-acme")
    assert told.exit_code == 1 and told.stderr.startswith(f"ratchet: error: {packed}: cannot be read back")
    row = json.loads(cli(home, "status", "renewal-acme", "--json").stdout)[0]
    assert (row["status"], row["archived"]) == ("damaged", True) and "cannot be read back" in row["error"]


def test_a_run_left_in_both_places_is_reported_and_the_next_archive_finishes_it(home: Path) -> None:
    journal = home / "runs" / "renewal-acme.jsonl"
    kept = journal.read_bytes()
    assert cli(home, "archive", "--finished-before", "30d").exit_code == 0
    journal.write_bytes(kept)  # as a crash between the archive's rename and the journal's removal leaves it
    note = "ratchet: warning: run renewal-acme is in both runs/ and archive/"
    assert note in cli(home, "status", "--all").stderr
    assert note in cli(home, "verify", "--all").stderr
    assert note in cli(home, "tail", "renewal-acme").stderr
    again = cli(home, "archive", "--finished-before", "300d")  # whatever the age: it was chosen already
    assert again.exit_code == 0
    assert again.stdout.splitlines() == [
        "renewal-acme: in both runs/ and archive/ (an archive cut short by a crash)",
        f"renewal-acme: archived (finished in 'sent', 12 records) to {home / 'archive'}/renewal-acme.jsonl.gz"]
    assert not journal.exists()


def test_a_run_in_both_places_with_another_journal_is_left_for_a_human(home: Path) -> None:
    assert cli(home, "archive", "--finished-before", "30d").exit_code == 0
    elsewhere = FileStore(home.parent / "elsewhere")  # another run under the same id, made apart
    with elsewhere.writer("renewal-acme", create=True) as w:
        w.append_many([run_started("renewal-acme", definition={"name": "m", "initial": "m"}, ts="2026-11-01T09:00:00Z"),
                       RunFinished(state="m", ts="2026-11-01T09:00:00Z")])
    shutil.copy(elsewhere.path("renewal-acme"), home / "runs" / "renewal-acme.jsonl")
    result = cli(home, "archive", "--finished-before", "1d")
    assert result.exit_code == 1
    assert "is archived with another journal than" in result.stdout
    assert (home / "runs" / "renewal-acme.jsonl").exists()


def test_a_bad_age_is_a_usage_error(home: Path) -> None:
    result = cli(home, "archive", "--finished-before", "a month")
    assert result.exit_code == 2 and "bad duration 'a month'" in result.stderr


def test_a_cancelled_run_that_still_owes_its_on_cancel_is_not_archived(home: Path) -> None:
    definition = {"name": "m", "initial": "m", "states": {"m": {}}, "on_cancel": "acts:release"}
    with FileStore(home.parent).writer("owing", create=True) as w:  # home.parent/runs is not the home's
        w.append_many([run_started("owing", definition=definition, ts="2026-11-01T09:00:00Z"),
                       Cancelled(by="ops", ts="2026-11-01T09:00:01Z")])
    shutil.copy(FileStore(home.parent).path("owing"), home / "runs" / "owing.jsonl")
    result = cli(home, "archive", "--finished-before", "30d", "--dry-run")
    assert result.exit_code == 0 and "owing" not in result.stdout
    assert "5 not ended" in result.stderr  # the 4 live fixtures and this one: its compensation is owed


def test_an_archive_cut_short_of_its_end_fails_verify(home: Path) -> None:
    assert cli(home, "archive", "--finished-before", "30d").exit_code == 0
    archived = home / "archive" / "renewal-acme.jsonl.gz"
    lines = gzip.decompress(archived.read_bytes()).splitlines(keepends=True)
    archived.write_bytes(gzip.compress(b"".join(lines[:4])))  # whole lines cut off: the chain still holds
    result = cli(home, "verify", "renewal-acme")
    assert result.exit_code == 1 and "does not end with the run's end" in result.stdout


def test_messages_to_an_archived_run_say_it_is_archived(home: Path) -> None:
    assert cli(home, "archive", "--finished-before", "30d").exit_code == 0
    for args in (("send", "renewal-acme", "approve", "--by", "alice"), ("cancel", "renewal-acme", "--by", "ops")):
        result = cli(home, *args)
        assert result.exit_code == 1 and "run 'renewal-acme' is archived" in result.stderr, result.output


def test_an_inbox_file_for_an_archived_run_is_refused_as_archived_not_unknown(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # A file dropped before the run was archived (or by hand): the supervisor's refusal says why.
    from engine.home import Home
    from engine.supervise.message import Message, write_message

    home = tmp_path / "fresh"
    (tmp_path / "clock").write_text("2026-11-01T09:00:00Z")
    monkeypatch.setenv("RATCHET_CLOCK_FILE", str(tmp_path / "clock"))
    machine = tmp_path / "instant.yaml"
    machine.write_text("name: instant\nversion: 1\ninitial: done\nstates:\n  done: {final: true}\ntransitions: []\n")
    assert cli(home, "run", str(machine), "--id", "gone").exit_code == 0
    (tmp_path / "clock").write_text("2026-12-28T09:00:00Z")
    assert cli(home, "archive", "--finished-before", "7d").exit_code == 0
    write_message(Home(home), Message(run="gone", trigger="approve", by="alice"))
    assert cli(home, "supervise", "--once").exit_code == 0
    notes = list((home / "inbox" / "rejected").glob("*.error.txt"))
    assert len(notes) == 1
    reason, detail = notes[0].read_text().splitlines()[:2]  # the note: its reason, then the detail
    assert reason == "archived run" and detail.startswith("run 'gone' is archived in "), (reason, detail)
