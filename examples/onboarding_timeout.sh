#!/usr/bin/env bash
# Scenario 3: an onboarding waits 3 days for the customer's reply, reminds them twice,
# then hands the run to a person (an escalation), who closes it. RATCHET_CLOCK_FILE, a
# test and demo hook, makes the engine read the time from a file, so days pass at once.
set -euo pipefail
DEMO=${DEMO:-.ratchet-demo/onboarding}
source "$(dirname "$0")/demo_lib.sh"
export RATCHET_CLOCK_FILE=$DEMO/clock

# at TIME: set the engine's clock (the demo's "it is now ...").
at() { printf '\n$ echo %s > %s\n' "$1" "$RATCHET_CLOCK_FILE"; echo "$1" >"$RATCHET_CLOCK_FILE"; }

at 2026-03-02T09:00:00Z
show "$RATCHET" run customer_onboarding --input customer=initech --id onboarding-initech

say "Three days pass without a reply: the wait times out and a reminder goes out."
at 2026-03-05T09:00:00Z
show "$RATCHET" supervise --once 2>&1
show "$RATCHET" status

say "Three more days, a second reminder; three more, and nobody has answered."
at 2026-03-08T09:00:00Z
show "$RATCHET" supervise --once 2>&1
at 2026-03-11T09:00:00Z
show "$RATCHET" supervise --once 2>&1
show "$RATCHET" status
effects reminder.send onboarding-initech
show cat "$RATCHET_HOME/escalations/onboarding-initech.json"

say "carol from customer success could not reach them either: she closes the onboarding."
show "$RATCHET" resolve onboarding-initech skip close --by carol --comment "no answer by phone"
show "$RATCHET" supervise --once 2>&1
show "$RATCHET" status
show "$RATCHET" tail onboarding-initech
show "$RATCHET" verify
