"""The fake services behind the shipped machines' actions keep an honest ledger:
every call is a line, an effect is marked once for idempotent services and every time
for non-idempotent ones, and the billing API fails as configured."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "examples"))
import fake_services


@pytest.fixture
def ledger(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(fake_services.LEDGER_ENV, str(path))
    monkeypatch.delenv(fake_services.FLAKY_ENV, raising=False)
    return path


def _effects(path: Path, kind: str) -> list[dict]:
    return [e for e in fake_services.read_ledger(path) if e["kind"] == kind and e["effect"]]


def test_an_idempotent_service_dedupes_by_key(ledger):
    first = fake_services.draft_email("r1", "k1", to="a@x", subject="s", body="b")
    again = fake_services.draft_email("r1", "k1", to="a@x", subject="s", body="b")
    fake_services.draft_email("r1", "k2", to="a@x", subject="s", body="b")
    assert again == first
    calls = [e for e in fake_services.read_ledger(ledger) if e["idempotency_key"] == "k1"]
    assert [(e["call"], e["effect"]) for e in calls] == [(1, True), (2, False)]
    assert len(_effects(ledger, "email.draft")) == 2  # one per key


def test_a_non_idempotent_service_has_an_effect_on_every_call(ledger):
    fake_services.send_email("r1", "k1", to="a@x", subject="s")
    fake_services.send_email("r1", "k1", to="a@x", subject="s")
    assert [e["call"] for e in _effects(ledger, "email.send")] == [1, 2]


def test_billing_fails_the_first_n_calls_per_key(ledger, monkeypatch):
    monkeypatch.setenv(fake_services.FLAKY_ENV, "2")
    for _ in range(2):
        with pytest.raises(fake_services.BillingUnavailable):
            fake_services.charge("r1", "k1", customer="acme", amount_cents=100, card="visa")
    assert fake_services.charge("r1", "k1", customer="acme", amount_cents=100, card="visa")["charge_id"]
    with pytest.raises(fake_services.BillingUnavailable):  # another key counts on its own
        fake_services.charge("r2", "k2", customer="acme", amount_cents=100, card="visa")
    entries = fake_services.read_ledger(ledger)
    assert [(e["call"], e["effect"], e.get("error")) for e in entries if e["idempotency_key"] == "k1"] == [
        (1, False, "BillingUnavailable"), (2, False, "BillingUnavailable"), (3, True, None)]
    assert all(e["run_id"] and e["ts"] for e in entries)


def test_a_declined_card_is_refused_without_effect(ledger):
    with pytest.raises(fake_services.CardDeclined):
        fake_services.charge("r1", "k1", customer="acme", amount_cents=100, card="declined")
    assert _effects(ledger, "billing.charge") == []
