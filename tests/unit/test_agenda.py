"""The agenda: deadlines on the clock (superseded ones skipped), back-offs on the monotonic clock."""

from __future__ import annotations

from datetime import timedelta

from engine.run.clock import FakeClock
from engine.supervise.agenda import MAX_BACKOFF, Agenda


def test_due_gives_each_current_deadline_once_when_it_passes():
    clock = FakeClock()
    agenda = Agenda(clock)
    t0 = clock.now()
    agenda.schedule("r1", t0 + timedelta(seconds=10))
    agenda.schedule("r2", t0 + timedelta(seconds=5))
    agenda.schedule("r2", t0 + timedelta(seconds=5))  # the same deadline again: still one
    assert agenda.due() == [] and not agenda.deadline_passed()
    clock.advance(6)
    assert agenda.deadline_passed()
    assert agenda.due() == [("r2", t0 + timedelta(seconds=5))]
    assert agenda.due() == []
    agenda.schedule("r1", t0 + timedelta(seconds=20))  # a later record moved r1's deadline
    clock.advance(9)
    assert agenda.deadline_passed()  # the superseded entry is still at the head of the heap
    assert agenda.due() == []  # ... and skipped
    clock.advance(5)
    assert agenda.due() == [("r1", t0 + timedelta(seconds=20))]


def test_next_wake_is_the_earliest_deadline_or_back_off_end():
    clock = FakeClock()
    agenda = Agenda(clock)
    assert agenda.next_wake() is None
    agenda.back_off("r1", 30)
    assert 29 < agenda.next_wake() <= 30
    agenda.schedule("r2", clock.now() + timedelta(seconds=10))
    assert agenda.next_wake() == 10
    clock.advance(11)
    assert agenda.next_wake() == 0  # a deadline past: wake at once
    agenda.due()
    agenda.progressed("r1")
    assert agenda.next_wake() is None


def test_failures_double_the_back_off_until_a_job_goes_through():
    agenda = Agenda(FakeClock())
    assert [agenda.back_off("r1") for _ in range(4)] == [0.5, 1, 2, 4]
    assert agenda.back_off("r1", 0.5) == 0.5  # a set delay (the run was locked) is no failure
    assert agenda.back_off("r1") == 8
    assert [agenda.back_off("r1") for _ in range(5)][-1] == MAX_BACKOFF
    agenda.progressed("r1")
    assert agenda.back_off("r1") == 0.5
    assert agenda.back_off("r2") == 0.5  # per run


def test_a_run_is_held_back_until_its_back_off_ends():
    agenda = Agenda(FakeClock())
    assert not agenda.held_back("r1")
    agenda.back_off("r1", 60)
    assert agenda.held_back("r1") and not agenda.held_back("r2")
    agenda.back_off("r1", 0)  # ended now
    assert not agenda.held_back("r1")
    agenda.back_off("r1", 60)
    agenda.progressed("r1")
    assert not agenda.held_back("r1")
