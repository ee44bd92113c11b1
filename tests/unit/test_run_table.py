"""The run table: journals folded incrementally, changes noted, damaged journals left alone."""

from __future__ import annotations

from engine.home import Home
from engine.supervise.runs import RunTable
from journal import StepStarted, Waiting

from damage import cut_at
from journal_builders import run_started

DEFINITION = {"initial": "review", "states": {"review": {}}}


def start(home: Home, run_id: str, *records) -> None:
    with home.store.writer(run_id, create=True) as w:
        w.append_many([run_started(run_id, definition=DEFINITION, definition_hash="sha256:x"), *records])


def test_scan_folds_new_and_grown_journals_and_notes_the_changes(home):
    start(home, "r1")
    start(home, "r2", Waiting(state="review", triggers=["approve"]))
    runs = RunTable(home)
    runs.scan()
    assert sorted(runs.take_changed()) == ["r1", "r2"] and runs.take_changed() == []
    assert runs.counts() == {"running": 1, "waiting": 1} and len(runs) == 2
    runs.scan()  # nothing grew: nothing read
    assert runs.take_changed() == []
    before = runs.get("r2").cursor
    with home.store.writer("r2") as w:
        w.append(StepStarted(state="review", attempt=1, idempotency_key="r2/review/1"))
    runs.scan()
    assert runs.take_changed() == ["r2"]
    tracked = runs.get("r2")
    assert tracked.state.last_seq == 3 and tracked.cursor.seq == 3 > before.seq
    assert tracked.cursor == home.store.read("r2").cursor  # read to the end of the journal


def test_a_journal_without_run_started_yet_is_not_a_run(home):
    (home.runs / "r1.jsonl").write_bytes(b"")
    runs = RunTable(home)
    assert runs.refresh("r1") is None and runs.get("r1") is None
    assert runs.refresh("../escape") is None  # not a run id


def test_a_journal_replaced_since_it_was_read_marks_its_run_damaged(home):
    start(home, "r1", Waiting(state="review", triggers=["approve"]))
    runs = RunTable(home)
    runs.refresh("r1")
    runs.take_changed()
    path = home.store.path("r1")
    cut_at(path, 10)  # cut below what was read
    tracked = runs.refresh("r1")
    assert tracked.status == "damaged" and "shrank" in tracked.broken
    assert runs.take_changed() == []
    assert runs.refresh("r1") is tracked  # left alone from now on
    assert runs.counts() == {"damaged": 1}


def test_a_journal_that_cannot_be_folded_marks_its_run_damaged_with_where(home):
    start(home, "r1", StepStarted(state="nowhere", attempt=1, idempotency_key="r1/nowhere/1"))
    tracked = RunTable(home).refresh("r1")
    assert tracked.status == "damaged" and "r1.jsonl:2" in tracked.broken and "ratchet verify" in tracked.broken


def test_a_record_that_cannot_be_folded_is_named_by_its_seq_in_a_later_read_too(home):
    """The table folds each read's records in one call (RunState.extend); a record that
    does not fit is still named by its own line, not the first of the read."""
    start(home, "r1")
    runs = RunTable(home)
    runs.scan()
    with home.store.writer("r1") as w:
        w.append_many([StepStarted(state="review", attempt=1, idempotency_key="r1/review/1"),
                       StepStarted(state="nowhere", attempt=1, idempotency_key="r1/nowhere/1")])
    runs.scan()
    tracked = runs.get("r1")
    assert tracked.status == "damaged"
    assert f"{home.store.where('r1')}:3: cannot fold this record (ReplayError" in tracked.broken
    assert tracked.state.last_seq == 2  # as after `apply`: the last record folded


def test_extend_folds_as_apply_does_every_fixture_journal():
    from pathlib import Path

    from engine.run.replay import RunState
    from journal import read

    fixtures = sorted((Path(__file__).parent.parent / "fixtures" / "journals").glob("*.jsonl"))
    assert len(fixtures) >= 10
    for path in fixtures:
        records = read(path).records
        one_by_one = RunState()
        for record in records:
            one_by_one.apply(record)
        at_once = RunState().extend(records)
        assert repr(at_once) == repr(one_by_one), path.name
        assert (at_once.last_seq, at_once.updated) == (records[-1].seq, records[-1].ts)


def test_a_scan_folds_with_the_collector_paused_and_restores_it(home):
    import gc

    start(home, "r1")
    start(home, "r2")
    seen = []

    class Observer:
        def run_changed(self, run_id, state, records, broken=""):
            seen.append(gc.isenabled())

    runs = RunTable(home)
    runs.observer = Observer()
    assert gc.isenabled()
    runs.scan()
    assert seen == [False, False] and gc.isenabled()
    gc.disable()
    try:
        runs.scan()  # nested in a caller's pause: left paused
        assert not gc.isenabled()
    finally:
        gc.enable()
