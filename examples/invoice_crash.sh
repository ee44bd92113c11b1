#!/usr/bin/env bash
# Scenario 2: an invoice meets a flaky billing API (two 503s, retried) and a slow bank.
# kill -9 the supervisor while the card is being charged, restart it: the run resumes
# from its journal, and because `charge` is not idempotent Ratchet never calls it again
# blindly. It escalates "unknown outcome"; a human checks billing and resolves it.
set -euo pipefail
DEMO=${DEMO:-.ratchet-demo/invoice}
SLOW=${RATCHET_SLOW_CHARGE_S:-5}
source "$(dirname "$0")/demo_lib.sh"
export RATCHET_FLAKY_FAILURES=2 RATCHET_SLOW_CHARGE_S=$SLOW  # fake billing: 2 failures, then slow

# The journal is JSON Lines: plain grep can watch it.
journal_has() { grep "$1" "$RATCHET_HOME/runs/inv-1001.jsonl"; }
status_is() { "$RATCHET" status inv-1001 --json | grep "\"status\": \"$1\""; }

show "$RATCHET" start invoice --input customer=acme --input amount_cents=1200 --id inv-1001
say "Start the supervisor in the background (its log: $DEMO/supervise-1.log)."
"$RATCHET" supervise 2>"$DEMO/supervise-1.log" &
supervisor=$!
trap 'kill "$supervisor" 2>/dev/null || true' EXIT  # never leave a supervisor behind
wait_for "the third charge attempt (the first two hit a 503)" \
  journal_has '"type":"step_started".*"state":"charge","attempt":3,'
say "The bank takes ${SLOW}s to answer. Kill the supervisor now, with no chance to clean up:"
show kill -9 "$supervisor"
wait "$supervisor" || true
show "$RATCHET" tail inv-1001
effects billing.charge inv-1001
show "$RATCHET" status

say "Restart the supervisor. It replays the journal and finds the charge in flight."
"$RATCHET" supervise 2>"$DEMO/supervise-2.log" &
supervisor=$!
wait_for "the run to escalate" status_is escalated
show "$RATCHET" status
show cat "$RATCHET_HOME/escalations/inv-1001.json"

say "Finance checks billing: no charge went through, so charging again is safe."
effects billing.charge inv-1001
show "$RATCHET" resolve inv-1001 retry --by finance --comment "no charge in billing"
wait_for "the invoice to be paid" status_is finished
show kill -TERM "$supervisor"
wait "$supervisor"
show "$RATCHET" tail inv-1001
effects billing.charge inv-1001
show "$RATCHET" verify
