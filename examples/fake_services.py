"""Fake external services for the shipped machines: email, billing, reminders, accounts.

They stand in for real APIs and keep a LEDGER of what they did, so that tests can count
side effects after crashes and restarts. The ledger is an append-only JSON Lines file,
path from $RATCHET_LEDGER (default ./ledger.jsonl). Every call appends one line:

    {"ts": ..., "kind": "email.send", "run_id": ..., "idempotency_key": ...,
     "call": 2, "effect": true, "result": {...}}            (or "error": "BillingUnavailable")

`call` counts calls of that kind with that key (1, 2, ...); `effect` is true when the
call changed the outside world. So "called twice" (two lines) is told apart from
"effect twice" (two lines with `effect: true`).

- Idempotent services (draft, reminder, receipt, account, notify) dedupe by
  idempotency key like a real API (Stripe-style): a repeated key returns the first
  result and has no second effect.
- Non-idempotent services (`send_email`, `charge`) do not dedupe: every call is an effect.
- `review_clause` (an AI model reviewing a contract clause) dedupes by key too, and is
  flaky with $RATCHET_FLAKY_REVIEWS=N: the first N calls per key fail, retryable.
- `charge` is flaky by configuration: with $RATCHET_FLAKY_FAILURES=N, the first N calls
  for each idempotency key raise BillingUnavailable (retryable) before any effect.
  A card named "declined" raises CardDeclined (not retryable), also without effect.
  With $RATCHET_SLOW_CHARGE_S=S, a charge that goes through takes S seconds before the
  card is charged (a slow bank), so a demo or a test can kill the process mid-charge.
- With $RATCHET_SLOW_RECEIPT_S=S, `send_receipt` answers S seconds after the receipt was
  sent (a slow mail API, after its effect): a step caught in flight that, run again with
  its key, has no second effect (tests/integration/test_pg_hosts.py).

Calls are serialised by an exclusive flock on the ledger, so concurrent workers (and
restarted ones) see each other's calls.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

LEDGER_ENV = "RATCHET_LEDGER"
FLAKY_ENV = "RATCHET_FLAKY_FAILURES"
FLAKY_REVIEW_ENV = "RATCHET_FLAKY_REVIEWS"
SLOW_CHARGE_ENV = "RATCHET_SLOW_CHARGE_S"
SLOW_RECEIPT_ENV = "RATCHET_SLOW_RECEIPT_S"


class BillingUnavailable(Exception):
    """The billing API is down or timed out: nothing was charged; try again later."""


class ReviewToolUnavailable(Exception):
    """The clause-review model timed out or was rate-limited: nothing was reviewed; try again."""


class CardDeclined(Exception):
    """The card was refused: retrying will not help."""


def ledger_path() -> Path:
    return Path(os.environ.get(LEDGER_ENV, "ledger.jsonl"))


def read_ledger(path: Path | None = None) -> list[dict]:
    """Every ledger line, oldest first (an absent ledger is empty)."""
    try:
        text = (path or ledger_path()).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _call(kind: str, run_id: str, key: str, decide: Callable[[list[dict]], dict]) -> dict:
    """Append one ledger line for a call; `decide(earlier calls of kind+key)` gives
    its `effect` and `result` (or `error`). Read and append happen under one lock."""
    path = ledger_path()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        earlier = [e for e in read_ledger(path) if e["kind"] == kind and e["idempotency_key"] == key]
        entry = {"ts": datetime.now(UTC).isoformat(), "kind": kind, "run_id": run_id,
                 "idempotency_key": key, "call": len(earlier) + 1, **decide(earlier)}
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8"))  # one write: one line
    finally:
        os.close(fd)  # releases the lock
    return entry


def _idempotent(kind: str, run_id: str, key: str, result: dict) -> dict:
    def decide(earlier: list[dict]) -> dict:
        first = next((e for e in earlier if e.get("effect")), None)
        if first is not None:
            return {"effect": False, "result": first["result"]}
        return {"effect": True, "result": result}

    return _call(kind, run_id, key, decide)["result"]


def draft_email(run_id: str, key: str, *, to: str, subject: str, body: str) -> dict:
    """Save a draft (idempotent): {"draft_id": ...}."""
    return _idempotent("email.draft", run_id, key,
                       {"draft_id": f"draft-{key}", "to": to, "subject": subject, "chars": len(body)})


def send_email(run_id: str, key: str, *, to: str, subject: str) -> dict:
    """Send an email (NOT idempotent: every call sends one): {"message_id": ...}."""
    def decide(earlier: list[dict]) -> dict:
        return {"effect": True, "result": {"message_id": f"msg-{key}-{len(earlier) + 1}",
                                           "to": to, "subject": subject}}

    return _call("email.send", run_id, key, decide)["result"]


def send_reminder(run_id: str, key: str, *, to: str, number: int) -> dict:
    """Send reminder number `number` (idempotent per key)."""
    return _idempotent("reminder.send", run_id, key, {"to": to, "number": number})


def create_account(run_id: str, key: str, *, customer: str) -> dict:
    """Create the customer's account (idempotent): {"account_id": ...}."""
    return _idempotent("account.create", run_id, key, {"account_id": f"acct-{customer}"})


def send_receipt(run_id: str, key: str, *, to: str, charge_id: str) -> dict:
    """Send a payment receipt (idempotent per key, as billing APIs do); slow as configured above."""
    result = _idempotent("email.receipt", run_id, key, {"to": to, "charge_id": charge_id})
    time.sleep(float(os.environ.get(SLOW_RECEIPT_ENV, "0")))  # outside the ledger's lock: others go on
    return result


def notify(run_id: str, key: str, *, to: str, message: str) -> dict:
    """Page a person (idempotent per key: one page per escalation)."""
    return _idempotent("notify", run_id, key, {"to": to, "message": message})


def charge(run_id: str, key: str, *, customer: str, amount_cents: int, card: str) -> dict:
    """Charge a card (NOT idempotent); flaky and declining as configured above."""
    failures = int(os.environ.get(FLAKY_ENV, "0"))
    slow = float(os.environ.get(SLOW_CHARGE_ENV, "0"))
    outcome: dict = {}

    def decide(earlier: list[dict]) -> dict:
        if len(earlier) < failures:
            outcome["raise"] = BillingUnavailable(f"billing API unavailable (call {len(earlier) + 1})")
        elif card == "declined":
            outcome["raise"] = CardDeclined(f"card of {customer} declined")
        if "raise" in outcome:
            return {"effect": False, "error": type(outcome["raise"]).__name__}
        time.sleep(slow)  # the bank answers slowly; the card is charged when it does
        return {"effect": True, "result": {"charge_id": f"ch-{key}-{len(earlier) + 1}",
                                           "customer": customer, "amount_cents": amount_cents}}

    entry = _call("billing.charge", run_id, key, decide)
    if "raise" in outcome:
        raise outcome["raise"]
    return entry["result"]


RISKY_WORDS = ("unlimited", "indemnify", "perpetual", "exclusive", "penalty")


def review_clause(run_id: str, key: str, *, clause: str) -> dict:
    """An AI model's review of one contract clause (idempotent per key, like an API that
    caches by request id): {"verdict": "acceptable"|"flagged", "risks": [...]}.

    Flaky: with $RATCHET_FLAKY_REVIEWS=N the first N calls for each key raise
    ReviewToolUnavailable (retryable) before any effect."""
    failures = int(os.environ.get(FLAKY_REVIEW_ENV, "0"))
    risks = [word for word in RISKY_WORDS if word in clause.lower()]
    outcome: dict = {}

    def decide(earlier: list[dict]) -> dict:
        first = next((e for e in earlier if e.get("effect")), None)
        if first is not None:
            return {"effect": False, "result": first["result"]}
        if len(earlier) < failures:
            outcome["raise"] = ReviewToolUnavailable(f"review model unavailable (call {len(earlier) + 1})")
            return {"effect": False, "error": "ReviewToolUnavailable"}
        return {"effect": True, "result": {"verdict": "flagged" if risks else "acceptable", "risks": risks}}

    entry = _call("clause.review", run_id, key, decide)
    if "raise" in outcome:
        raise outcome["raise"]
    return entry["result"]
