# Shared by the scenario scripts: which ratchet to run, a fresh demo folder, and helpers.
# Sourced, not run. Each scenario gets its own folder (DEMO), so they never collide.

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repo root: machines are found by name in ./machines
if [[ -z ${RATCHET:-} ]]; then
  if [[ -x .venv/bin/ratchet ]]; then RATCHET=.venv/bin/ratchet; else RATCHET=ratchet; fi
fi
unset RATCHET_CLOCK_FILE RATCHET_FLAKY_FAILURES RATCHET_SLOW_CHARGE_S RATCHET_CRASH_AT RATCHET_CRASH_COUNT
mkdir -p "$DEMO"
rm -rf "$DEMO/home" "$DEMO/ledger.jsonl" "$DEMO/drafts" "$DEMO/clock" "$DEMO"/supervise-*.log
export RATCHET_HOME=$DEMO/home RATCHET_LEDGER=$DEMO/ledger.jsonl

# show CMD...: print the command (quoting what needs it), then run it.
show() {
  local line="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./=:@+,-]+$ ]]; then line+=" $arg"; else line+=" '$arg'"; fi
  done
  printf '\n$%s\n' "$line"
  "$@"
}

# say TEXT: a comment of the walk-through.
say() { printf '\n# %s\n' "$*"; }

# effects KIND RUN: how often the fake services' ledger says KIND changed the outside
# world for RUN (a call that failed before its effect has "effect": false).
effects() {
  local n
  n=$(grep "\"kind\": \"$1\"" "$RATCHET_LEDGER" 2>/dev/null | grep "\"run_id\": \"$2\"" \
      | grep -c '"effect": true' || true)
  echo "ledger: $1 for $2 happened ${n:-0} time(s)"
}

# wait_for WHAT CMD...: run CMD every 0.1 s until it succeeds; give up after 30 s.
wait_for() {
  local what=$1 deadline=$((SECONDS + 30))
  shift
  printf '\n# waiting for %s\n' "$what"
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "gave up waiting for $what" >&2; exit 1; fi
    sleep 0.1
  done
}
