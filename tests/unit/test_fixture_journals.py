"""Journals written by earlier versions (tests/fixtures/journals/) replay the same, forever.

Each fixture is a real run of a shipped machine, kept byte for byte: it must verify
against its recorded head, decode and re-encode to the very same bytes (so a record
change that moves, retypes or stops omitting a field shows here), and fold — at its end
and at every prefix a crash could leave — to what `expected.json` says that version
folded it to. Together the fixtures use every record type, and every shipped machine.
A failure here means a change would strand the runs already on disk: make the new code
read the old journals, never "fix" the fixtures (make_fixtures.py adds new ones).
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict
from pathlib import Path

import pytest

from engine.definition.loader import load_machine
from engine.run.clock import iso
from engine.run.replay import RunState, fold
from journal import RunStarted, decode, encode, read, verify
from journal.records import AnyRecord, record_type

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "journals"
EXPECTED: dict[str, dict] = json.loads((FIXTURES / "expected.json").read_text())
NAMES = sorted(EXPECTED)


def journal(name: str) -> Path:
    return FIXTURES / f"{name}.jsonl"


def tag(record) -> str:
    return record_type(record)


def test_every_fixture_has_expectations_and_every_expectation_a_fixture():
    assert {p.stem for p in FIXTURES.glob("*.jsonl")} == set(EXPECTED)
    assert len(EXPECTED) >= 10


def test_the_fixtures_use_every_record_type():
    used = {tag(r) for name in NAMES for r in read(journal(name)).records}
    every = {cls.__struct_config__.tag for cls in typing.get_args(AnyRecord)}
    assert used == every, f"no fixture has: {sorted(every - used)}"


def test_every_shipped_machine_has_fixtures():
    shipped = {load_machine(p, ROOT / "machines").name for p in (ROOT / "machines").iterdir()
               if p.suffix in (".yaml", ".yml") or (p.suffix == ".py" and not p.stem.endswith("_actions"))}
    assert shipped and shipped <= {e["machine"] for e in EXPECTED.values()}


@pytest.mark.parametrize("name", NAMES)
def test_a_fixture_verifies_against_its_recorded_head(name):
    expected = EXPECTED[name]
    result = verify(journal(name), run_id=expected["run_id"], head=expected["head"])
    assert result.ok, str(result)
    assert (result.records, result.torn_bytes) == (expected["records"], 0)


@pytest.mark.parametrize("name", NAMES)
def test_a_fixture_reencodes_to_its_exact_bytes(name):
    lines = journal(name).read_bytes().splitlines()
    assert [encode(decode(line)) for line in lines] == lines
    first = decode(lines[0])
    assert isinstance(first, RunStarted) and first.format == 1 and b'"format"' not in lines[0]


@pytest.mark.parametrize("name", NAMES)
def test_a_fixture_folds_to_what_its_version_folded(name):
    expected = EXPECTED[name]
    rs = fold(read(journal(name)).records)
    got = {"run_id": rs.run_id, "machine": rs.machine, "status": rs.status, "state": rs.state,
           "outcome": rs.outcome, "escalation": rs.escalation.reason if rs.escalation else None,
           "deadline": iso(rs.deadline) if rs.deadline else None, "attempt": rs.attempt,
           "in_flight": rs.in_flight.idempotency_key if rs.in_flight else None,
           "data": rs.data, "records": rs.last_seq}
    assert got == {k: expected[k] for k in got}


@pytest.mark.parametrize("name", NAMES)
def test_every_prefix_of_a_fixture_folds_and_folding_one_by_one_agrees(name):
    records = read(journal(name)).records
    live = RunState()
    for n, record in enumerate(records, 1):
        live.apply(record)  # how a runner keeps its state up to date
        assert asdict(fold(records[:n])) == asdict(live), f"{name}: after record #{n}"
