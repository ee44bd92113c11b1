"""Actions and predicates of the customer onboarding machine (customer_onboarding.yaml)."""

import sys
from pathlib import Path

# The fake services stand in for real client libraries; they live in examples/, which
# is not installed, so make that folder importable as an installed library would be.
sys.path.append(str(Path(__file__).resolve().parent.parent / "examples"))

import fake_services

MAX_REMINDERS = 2


def _email(ctx) -> str:
    return ctx.input.get("email", f"{ctx.input.get('customer', 'customer')}@example.com")


def send_welcome(ctx) -> dict:
    """Ask the customer for their set-up details (idempotent: a draft-and-queue API)."""
    draft = fake_services.draft_email(ctx.run_id, ctx.idempotency_key, to=_email(ctx),
                                      subject="Welcome! A few details to get you started",
                                      body="Please reply with your team's details.")
    return {"welcome_id": draft["draft_id"], "reminders": 0}


def send_reminder(ctx) -> dict:
    """Remind the customer; counts reminders in the run's data."""
    number = ctx.data.get("reminders", 0) + 1
    fake_services.send_reminder(ctx.run_id, ctx.idempotency_key, to=_email(ctx), number=number)
    return {"reminders": number}


def create_account(ctx) -> dict:
    account = fake_services.create_account(ctx.run_id, ctx.idempotency_key,
                                           customer=ctx.input.get("customer", "unknown"))
    return {"account_id": account["account_id"]}


def notify_success_team(ctx) -> None:
    """on_escalate: a human from customer success takes over."""
    fake_services.notify(ctx.run_id, ctx.idempotency_key, to="customer-success",
                         message=f"onboarding {ctx.run_id} escalated in state {ctx.state}")


def reminders_exhausted(data: dict) -> bool:
    """Guard: the customer was reminded enough; stop waiting."""
    return data.get("reminders", 0) >= MAX_REMINDERS
