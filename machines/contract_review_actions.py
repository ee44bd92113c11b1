"""Actions of the contract review (contract_review.yaml) and of each clause's review
(clause_review.yaml), on the fake services (examples/fake_services.py)."""

import sys
from pathlib import Path

# The fake services stand in for real client libraries (see renewal_actions.py).
sys.path.append(str(Path(__file__).resolve().parent.parent / "examples"))

import fake_services

from engine import Fire


def split_clauses(ctx) -> dict:
    """The contract's clauses, one child review each: `clauses` in the input, or the
    `contract` text split on blank lines."""
    clauses = ctx.input.get("clauses")
    if clauses is None:
        text = ctx.input.get("contract", "")
        clauses = [part.strip() for part in text.split("\n\n") if part.strip()]
    return {"clauses": clauses}  # not a list? the spawn escalates, saying so


def review_clause(ctx) -> Fire:
    """One clause (the child's input: {"item": text}, or {"text": ...}), reviewed by the
    flaky model; fires `acceptable` or `flagged`, keeping the risks it found."""
    clause = ctx.input.get("text") or ctx.input.get("item") or ""
    review = fake_services.review_clause(ctx.run_id, ctx.idempotency_key, clause=str(clause))
    return Fire(review["verdict"], {"risks": review["risks"]})


def summarize(ctx) -> dict:
    """Collect the clause verdicts (data.review_clauses, filled by the join) for legal."""
    reviews = ctx.data.get("review_clauses", {})
    flagged = sorted((key for key, r in reviews.items() if r.get("outcome") == "flagged"), key=int)
    return {"flagged": flagged, "clauses_reviewed": len(reviews)}


def notify_owner(ctx) -> None:
    """on_escalate: tell the contract's owner that a review needs a human."""
    fake_services.notify(ctx.run_id, ctx.idempotency_key, to=ctx.input.get("owner", "legal-ops"),
                         message=f"contract review {ctx.run_id} escalated in state {ctx.state}")
