#!/usr/bin/env bash
# Scenario 4: fan-out. A contract review splits a contract into clauses and starts one
# child run per clause (an AI model reviews it; the model is flaky, so every review fails
# once and is retried), at most four at a time. The parent joins them all, collects the
# verdicts, and waits for legal's sign-off.
set -euo pipefail
DEMO=${DEMO:-.ratchet-demo/contract}
source "$(dirname "$0")/demo_lib.sh"
export RATCHET_FLAKY_REVIEWS=1  # the fake review model fails the first call for each clause

status_is() { "$RATCHET" status contract-acme --json | grep "\"$1\": \"$2\""; }

say "Start the review of a six-clause contract: it splits it, starts the first four clause reviews, and waits."
show "$RATCHET" run contract_review --id contract-acme --input owner=dana --input 'clauses=[
  "Payment is due within 30 days of the invoice.",
  "The supplier accepts unlimited liability for data loss.",
  "Either party may end the agreement with 90 days notice.",
  "Prices are fixed for the first year.",
  "The customer grants the supplier an exclusive right to supply.",
  "This agreement is governed by the laws of Ireland."]'
show "$RATCHET" status --tree

say "Start the supervisor: it runs the children (each retried once), starts the last two as slots free, and joins."
"$RATCHET" supervise 2>"$DEMO/supervise-1.log" &
supervisor=$!
trap 'kill "$supervisor" 2>/dev/null || true' EXIT  # never leave a supervisor behind
wait_for "all six clauses reviewed and the join done" status_is state legal_signoff
show "$RATCHET" status --tree
show "$RATCHET" tail contract-acme
show "$RATCHET" tail contract-acme.review_clauses.1

say "Legal reads the verdicts (the join put them in data.review_clauses; summarize flagged clauses 1 and 4) and signs."
show "$RATCHET" approve contract-acme --by lee --comment "clauses 1 and 4 renegotiated"
wait_for "the contract to be signed" status_is status finished
show kill -TERM "$supervisor"
wait "$supervisor"
show "$RATCHET" status contract-acme
for i in 0 1 2 3 4 5; do effects clause.review "contract-acme.review_clauses.$i"; done
show "$RATCHET" verify
