"""Actions and predicates of the invoice machine (invoice.py), on the fake billing API."""

import sys
from pathlib import Path

# The fake services stand in for real client libraries; they live in examples/, which
# is not installed, so make that folder importable as an installed library would be.
sys.path.append(str(Path(__file__).resolve().parent.parent / "examples"))

import fake_services
from fake_services import BillingUnavailable, CardDeclined  # noqa: F401  (named in invoice.py)


def prepare_invoice(ctx) -> dict:
    """Compute what is due from the run's input (pure: safe to run again)."""
    lines = ctx.input.get("lines") or [{"amount_cents": int(ctx.input.get("amount_cents", 0))}]
    return {"amount_cents": sum(int(line["amount_cents"]) for line in lines)}


def nothing_due(data: dict) -> bool:
    """Guard: a zero invoice is closed without charging."""
    return data.get("amount_cents", 0) <= 0


def charge(ctx) -> dict:
    """Charge the card. Raises BillingUnavailable (retried) or CardDeclined (not retried)."""
    result = fake_services.charge(ctx.run_id, ctx.idempotency_key,
                                  customer=ctx.input.get("customer", "unknown"),
                                  amount_cents=ctx.data["amount_cents"],
                                  card=ctx.input.get("card", "visa"))
    return {"charge_id": result["charge_id"]}


def send_receipt(ctx) -> dict:
    receipt = fake_services.send_receipt(ctx.run_id, ctx.idempotency_key,
                                         to=ctx.input.get("email", "billing@example.com"),
                                         charge_id=ctx.data["charge_id"])
    return {"receipt_to": receipt["to"]}


def notify_payment_failed(ctx) -> None:
    """Tell the customer their payment failed (once per failed invoice)."""
    fake_services.notify(ctx.run_id, ctx.idempotency_key,
                         to=ctx.input.get("email", "billing@example.com"),
                         message=f"payment for invoice {ctx.run_id} failed")


def notify_finance(ctx) -> None:
    """on_escalate: finance looks at invoices that need a human."""
    fake_services.notify(ctx.run_id, ctx.idempotency_key, to="finance",
                         message=f"invoice {ctx.run_id} escalated in state {ctx.state}")
