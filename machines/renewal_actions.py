"""Actions of the renewal review machine (renewal_review.yaml), on the fake services."""

import sys
from pathlib import Path

# The fake services stand in for real client libraries; they live in examples/, which
# is not installed, so make that folder importable as an installed library would be.
sys.path.append(str(Path(__file__).resolve().parent.parent / "examples"))

import fake_services


def draft_summary(ctx) -> dict:
    """Draft the renewal offer for the account manager to review (idempotent)."""
    customer = ctx.input.get("customer", "unknown")
    draft = fake_services.draft_email(
        ctx.run_id, ctx.idempotency_key, to=ctx.input.get("email", f"{customer}@example.com"),
        subject=f"Your renewal, {customer}", body=f"Renewal offer for {customer}.")
    return {"draft_id": draft["draft_id"]}


def send_email(ctx) -> dict:
    """Send the approved offer. Not idempotent: the machine marks it `idempotent: false`."""
    customer = ctx.input.get("customer", "unknown")
    sent = fake_services.send_email(
        ctx.run_id, ctx.idempotency_key, to=ctx.input.get("email", f"{customer}@example.com"),
        subject=f"Your renewal, {customer}")
    return {"message_id": sent["message_id"]}


def notify_owner(ctx) -> None:
    """on_escalate: tell the renewal's owner that a run needs a human."""
    fake_services.notify(ctx.run_id, ctx.idempotency_key, to=ctx.input.get("owner", "sales-ops"),
                         message=f"renewal run {ctx.run_id} escalated in state {ctx.state}")


def notify_head_of_sales(ctx) -> None:
    """on_escalate of `review`: no manager approved within 2 days."""
    fake_services.notify(ctx.run_id, ctx.idempotency_key, to="head-of-sales",
                         message=f"renewal {ctx.run_id} waited 2 days for approval")
