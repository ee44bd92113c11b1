#!/usr/bin/env bash
# Scenario 1: two renewals wait for a manager. Approve one by dropping a file in the inbox
# by hand, the other with `ratchet approve`; the supervisor sends exactly one email each.
set -euo pipefail
DEMO=${DEMO:-.ratchet-demo/renewal}
source "$(dirname "$0")/demo_lib.sh"

say "Start two renewals; each drafts its offer, then waits in 'review' for alice or bob."
show "$RATCHET" run renewal_review --input customer=acme --id renewal-acme
show "$RATCHET" run renewal_review --input customer=globex --id renewal-globex
show "$RATCHET" status

say "alice approves acme by hand: write the file elsewhere, then rename it into the inbox."
mkdir -p "$DEMO/drafts"
echo '{"run": "renewal-acme", "trigger": "approve", "by": "alice", "comment": "price ok"}' \
  > "$DEMO/drafts/approve-acme.json"
show cat "$DEMO/drafts/approve-acme.json"
show mv "$DEMO/drafts/approve-acme.json" "$RATCHET_HOME/inbox/"

say "bob approves globex with the CLI, which writes the same kind of file."
show "$RATCHET" approve renewal-globex --by bob --comment "fine by me"

say "The supervisor applies both files and sends the emails."
show "$RATCHET" supervise --once 2>&1
show "$RATCHET" status
show "$RATCHET" tail renewal-acme
show ls "$RATCHET_HOME/inbox/done"
effects email.send renewal-acme
effects email.send renewal-globex
show "$RATCHET" verify
