"""The view's parts without a browser: the story of a real run (driven in-process on a fake
clock), the diagram's SVG, and the dashboard's filters over status rows."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from engine.home import Home
from engine.run.clock import FakeClock
from engine.run.runner import Runner
from engine.supervise.message import Message
from engine.supervise.status import StatusRow, status_rows
from engine.view import diagram, missing
from engine.view.dashboard import Filters, listing
from engine.view.rows import RowCache
from engine.view.story import span, tell
from journal.records import decode_lines

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.setenv("RATCHET_LEDGER", str(tmp_path / "ledger.jsonl"))
    return Runner(Home(tmp_path / "home"), clock=FakeClock("2026-03-02T09:00:00Z"), machines_dir=ROOT / "machines")


def test_span_keeps_two_units() -> None:
    assert [span(s) for s in (0, 40, 600, 3 * 3600 + 5 * 60 + 7, 86400 + 20 * 3600 + 59, 2 * 86400)] == [
        "0 s", "40 s", "10 m", "3 h 5 m", "1 d 20 h", "2 d"]


def test_a_story_names_its_gaps_people_and_data_changes(runner: Runner) -> None:
    clock: FakeClock = runner.clock  # type: ignore[assignment]
    run_id = runner.start("renewal_review", {"customer": "acme"}, run_id="r1", by="dana")
    runner.run(run_id)
    clock.advance(timedelta(days=1, hours=20).total_seconds())
    runner.deliver(run_id, Message(run=run_id, trigger="approve", by="alice", comment="ok", data={"seats": 40}),
                   source_file="a.json")
    story = tell(run_id, runner.home.store.read(run_id).records)

    kinds = [e.kind for e in story.entries]
    approval = story.entries[kinds.index("trigger_received")]
    assert approval.gap == "waited 1 d 20 h for alice or bob (approve|revise|reject in 'review')"
    assert (approval.who, approval.tone, approval.detail) == ("alice", "person", "approve “ok”")
    assert [(c.key, c.before, c.after, c.kind) for c in approval.changes] == [("seats", None, "40", "added")]
    assert [e.gap for e in story.entries].count(None) == len(story.entries) - 1  # one pause only
    assert story.taken == [("draft", "review", "ok"), ("review", "send", "approve"), ("send", "sent", "ok")]
    assert story.visited == ["draft", "review", "send", "sent"]
    assert story.run.status == "finished" and story.trailing_gap is None


def test_a_waiting_run_says_how_long_it_has_waited_so_far(runner: Runner) -> None:
    run_id = runner.start("renewal_review", {"customer": "acme"}, run_id="r1")
    runner.run(run_id)
    records = runner.home.store.read(run_id).records
    later = runner.clock.now() + timedelta(hours=30)
    assert tell(run_id, records, now=later).trailing_gap == (
        "waiting 1 d 6 h so far for alice or bob (approve|revise|reject in 'review')")
    assert tell(run_id, records, now=runner.clock.now()).trailing_gap is None  # no pause yet


DEFINITION = {
    "name": "m", "version": 1, "initial": "a",
    "states": {"a": {"action": "x:y"}, "b": {"approvers": ["ann"]}, "c": {"final": True, "outcome": "<b>done</b>"}},
    "transitions": [{"trigger": "ok", "source": ["a"], "dest": "b"},
                    {"trigger": "go", "source": ["b"], "dest": "c", "conditions": ["x:ready"]},
                    {"trigger": "back", "source": ["b"], "dest": "a"},
                    {"trigger": "nudge", "source": ["b"], "dest": "b"}],
}


def test_the_diagram_marks_the_path_taken_and_escapes_its_text() -> None:
    svg = diagram.render(DEFINITION, taken=[("a", "b", "ok")], visited=["a", "b"], current="b", escalated=True)

    assert svg.startswith('<svg class="diagram"') and svg.endswith("</svg>")
    states = dict(re.findall(r'<g class="([^"]+)" data-state="(\w+)"', svg)[i][::-1] for i in range(3))
    assert states == {"a": "state visited", "b": "state visited current escalated", "c": "state final"}
    taken = re.findall(r'<path class="edge taken" d="[^"]+" marker-end="url\(#arrow-taken\)"/>'
                       r'<rect[^>]+/><text class="label taken"[^>]*>([^<]+)</text>', svg)
    assert taken == ["ok"]
    assert ">go if ready</text>" in svg and ">back</text>" in svg and ">nudge</text>" in svg
    assert "<b>" not in svg and "final: &lt;b&gt;done&lt;/b&gt;" in svg


def test_filters_and_counts_cover_every_run() -> None:
    rows = [StatusRow("w1", machine="m", state="review", status="waiting", approvers=["alice", "bob"]),  # type: ignore[arg-type]
            StatusRow("w2", machine="m", state="review", status="waiting", approvers=["bob"], overdue_s=60.0),  # type: ignore[arg-type]
            StatusRow("e1", machine="n", state="charge", status="escalated", escalation="unknown outcome"),  # type: ignore[arg-type]
            StatusRow("f1", machine="n", state="paid", status="finished")]  # type: ignore[arg-type]

    def ids(**query: str) -> list[str]:
        return [row.run_id for row in listing(rows, Filters.from_query(query)).rows]

    assert ids() == ["e1", "w2", "w1", "f1"]  # escalated first, then the overdue
    assert ids(status="waiting") == ["w2", "w1"]
    assert ids(machine="n") == ["e1", "f1"]
    assert ids(state="review", waiting_on="alice") == ["w1"]
    assert ids(overdue="1") == ["w2"] and ids(escalated="on") == ["e1"] and ids(overdue="0") == ids()
    found = listing(rows, Filters(status="finished"))
    assert (found.total, found.matched, found.counts, found.overdue) == (
        4, 1, {"waiting": 2, "escalated": 1, "finished": 1}, 1)
    assert found.choices["waiting_on"] == ["alice", "bob"]


def test_status_rows_of_a_home_feed_the_dashboard_unchanged(runner: Runner) -> None:
    runner.run(runner.start("renewal_review", {"customer": "acme"}, run_id="r1"))
    rows = status_rows(runner.home, now=runner.clock.now() + timedelta(days=3))
    found = listing(rows, Filters(overdue=True))
    assert [(r.run_id, r.status, r.overdue_s) for r in found.rows] == [("r1", "waiting", 86400.0)]


def test_a_missing_extra_is_named() -> None:
    assert missing("json", "no_such_module_here") == ["no_such_module_here"]


def test_failed_attempts_and_retries_stand_out(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATCHET_FLAKY_FAILURES", "2")  # the fake billing API fails twice, then charges
    run_id = runner.start("invoice", {"customer": "acme", "amount_cents": 1200}, run_id="inv-1")
    runner.run(run_id)
    story = tell(run_id, runner.home.store.read(run_id).records)

    marked = [(e.kind, e.tone) for e in story.entries if e.tone]
    assert marked == [("step_failed", "retry"), ("retry_scheduled", "retry")] * 2 + [("run_finished", "end")]
    failed = next(e for e in story.entries if e.kind == "step_failed")
    assert failed.detail == "attempt 1: BillingUnavailable: billing API unavailable (call 1)"
    retry = next(e for e in story.entries if e.kind == "retry_scheduled")
    assert re.fullmatch(r"attempt 2 due \S+ \S+Z \(in [\d.]+ s\)", retry.detail), retry.detail  # jittered
    assert story.run.outcome == "paid"


def test_the_row_cache_rebuilds_what_changed_and_what_time_moves(runner: Runner) -> None:
    cache = RowCache(runner.home)
    a = runner.start("renewal_review", {"customer": "a"}, run_id="a")
    runner.run(a)
    now = runner.clock.now()
    assert [(r.run_id, r.status) for r in cache.rows(now)] == [("a", "waiting")]

    runner.deliver(a, Message(run=a, trigger="approve", by="alice"), source_file="a.json")
    runner.run(runner.start("renewal_review", {"customer": "b"}, run_id="b"))
    assert [(r.run_id, r.status) for r in cache.rows(now)] == [("a", "waiting"), ("b", "waiting")]  # a: not told
    cache.mark(["a"])
    assert [(r.run_id, r.status) for r in cache.rows(now)] == [("a", "finished"), ("b", "waiting")]

    later = now + timedelta(days=2, hours=1)  # b's wait ran out an hour ago: no record says so, the clock does
    assert [(r.run_id, r.overdue_s) for r in cache.rows(later)] == [("a", None), ("b", 3600.0)]


def test_a_fan_out_parent_says_which_children_it_started_and_how_each_ended() -> None:
    """The contract_review fixture (a real run, journaled by the engine): its `spawned`,
    `child_finished` and `waiting` lines name the children, and the diagram says the state
    spawns them (not that it waits for a person)."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "journals" / "contract_signed.jsonl"
    records = decode_lines(fixture.read_bytes())
    story = tell("contract-acme", records)
    details = {(e.kind, e.detail) for e in story.entries}
    spawned = [d for k, d in details if k == "spawned"]
    child = r"contract-acme\.review_clauses\.\d"
    assert spawned and all(re.fullmatch(rf"started {child}(, {child})* \(\d of \d\)", d) for d in spawned), spawned
    assert ("child_finished", "contract-acme.review_clauses.1 finished → flagged") in details
    assert ("waiting", "for its children until 2026-11-28 09:00:00Z") in details
    svg = diagram.render(story.run.definition)
    assert "spawns clause_review" in svg
    joined = next(e for e in story.entries if e.kind == "child_finished" and e.seq > 8)
    key = joined.detail.split()[0].rpartition(".")[2]  # the child's index
    assert [(c.key, c.kind) for c in joined.changes] == [(f"review_clauses.{key}", "added")]


def test_the_dashboard_and_run_pages_show_a_parent_its_children_and_a_child_its_parent(runner: Runner) -> None:
    from engine.view.report import environment, run_context

    runner.run(runner.start("contract_review", {"owner": "dana", "clauses": ["a", "b", "c"]}, run_id="k"))
    env, store = environment(), runner.home.store
    found = listing(status_rows(runner.home, now=runner.clock.now()), Filters())
    board = env.get_template("dashboard_body.html").render(listing=found, filters=Filters(), generation=0,
                                                           location="")
    assert "children: 0/3 finished, 3 live" in board  # what `ratchet status` says in WAITING ON
    parent = env.get_template("run_body.html").render(**{**run_context(store, "k"), "linked": True},
                                                      generation=0, location="")
    assert "waiting for</span><b>its children" in parent and "0/3 finished, 3 live" in parent
    seals = [e.detail for e in tell("k", store.read("k").records).entries if e.kind == "sealed"]
    assert seals and all(re.fullmatch(r"through #\d+ \(key [0-9a-f]{16}\)", d) for d in seals), seals
    assert all(f'href="/runs/k.review_clauses.{i}"' in parent for i in range(3))
    child = env.get_template("run_body.html").render(**{**run_context(store, "k.review_clauses.1"), "linked": True},
                                                     generation=0, location="")
    assert 'spawned by</span><b><a href="/runs/k">k</a> in \'review_clauses\'' in child
    report = env.get_template("report.html").render(**run_context(store, "k.review_clauses.1"))
    assert "spawned by</span><b>k in" in report and 'href="/runs/' not in report  # the report loads nothing


def test_the_report_says_how_each_decision_was_proven_and_counts_quorum_votes(tmp_path: Path) -> None:
    """As `ratchet tail` does: an approval proven by signature is not shown like a name taken at
    its word (README "Who decided"); a vote toward a quorum says how far the count is."""
    from engine.run.clock import iso
    from engine.trust.sender import SIGNATURE, UNIX_USER, Sender
    from engine.view.report import render_report

    (tmp_path / "vote.yaml").write_text(
        "name: vote\nversion: 1\ninitial: review\nstates:\n"
        "  review: {approvers: [alice, bob, carol], quorum: {approve: 2}, timeout: 1d}\n  done: {final: true}\n"
        "transitions:\n  - {trigger: approve, source: review, dest: done}\n")
    clock = FakeClock("2026-03-02T09:00:00Z")
    runner = Runner(Home(tmp_path / "home"), clock=clock)
    rid = runner.start(tmp_path / "vote.yaml", {}, run_id="v1", by="dana")
    runner.advance(rid)
    signed = Sender("bob", True, SIGNATURE, signature="c2ln", answers=runner.read(rid).stands_at,
                    expires=iso(clock.now() + timedelta(hours=1)))
    assert runner.deliver(rid, Message(run=rid, trigger="approve", by="bob"), sender=signed).accepted
    runner.deliver(rid, Message(run=rid, trigger="approve", by="mallory"), sender=Sender("mallory"))
    assert runner.deliver(rid, Message(run=rid, trigger="approve", by="carol"),
                          sender=Sender("carol", True, UNIX_USER)).accepted
    story = tell(rid, runner.home.store.read(rid).records)
    decided = [(e.kind, e.who, e.proof, e.detail) for e in story.entries if e.who and e.kind != "run_started"]
    assert decided == [
        ("trigger_voted", "bob", "signature", "approve: 1 of 2"),
        ("trigger_refused", "mallory", "unverified", "approve refused: 'mallory' is not an approver of 'review' "
                                                     "(approvers: alice, bob, carol)"),
        ("trigger_received", "carol", "unix_user", "approve: quorum met (bob, carol)"),
    ]
    page = render_report(runner.home.store, rid)
    assert '<td class="who">bob <span class="proof">[signature]</span></td>' in page
    assert '<td class="who">mallory <span class="proof">[unverified]</span></td>' in page


def test_the_row_cache_rebuilds_a_parents_row_when_a_child_escalates(tmp_path: Path) -> None:
    """A parent's row carries its escalated children (ESCALATION: `child ID: reason`), but a
    child's escalation adds no record to the parent's journal: only the child is marked."""
    (tmp_path / "stuck.yaml").write_text(
        "name: stuck\nversion: 1\ninitial: work\nstates:\n  work: {timeout: 1h}\n  done: {final: true}\n"
        "transitions:\n  - {trigger: finish, source: work, dest: done}\n")
    (tmp_path / "fan.yaml").write_text(
        "name: fan\nversion: 1\ninitial: fan\nstates:\n  fan:\n    spawn: {machine: stuck, for_each: items}\n"
        "    timeout: 1d\n  done: {final: true}\ntransitions:\n  - {trigger: joined, source: fan, dest: done}\n"
        "  - {trigger: failed, source: fan, dest: done}\n")
    clock = FakeClock("2026-03-02T09:00:00Z")
    runner = Runner(Home(tmp_path / "home"), clock=clock, machines_dir=tmp_path)
    runner.launch(tmp_path / "fan.yaml", {"items": [1]}, run_id="p")
    runner.advance("p.fan.0")
    cache = RowCache(runner.home)
    assert {r.run_id: r.children_escalated for r in cache.rows(clock.now())} == {"p": [], "p.fan.0": []}
    clock.advance(3601)
    assert runner.advance("p.fan.0").status == "escalated"
    cache.mark(["p.fan.0"])  # what the store's changes say: only the child's journal grew
    rows = {r.run_id: r for r in cache.rows(clock.now())}
    assert rows["p.fan.0"].status == "escalated" and rows["p"].children_escalated == ["p.fan.0: timeout"]
