-- Ratchet's journal in PostgreSQL, version 1 (journal/pg_store.py).
-- A run's journal is its rows in ratchet_records: each `line` is the exact JSON line the
-- file store would write (without the newline), so the hash chain is the same bytes.

CREATE SEQUENCE ratchet_change;  -- orders appends for `changes` (with txid: see pg_store)

CREATE TABLE ratchet_runs (
    run_id      text PRIMARY KEY,
    last_seq    bigint NOT NULL DEFAULT 0,      -- the chain's end: each append expects it
    head        text NOT NULL,                  -- sha256 of the last line (GENESIS when empty)
    change      bigint NOT NULL DEFAULT nextval('ratchet_change'),
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),  -- the transaction of the last change
    owner       text,                           -- the writer that holds the run's lease
    owner_pid   integer,                        -- its server process (pg_backend_pid)
    lease_until timestamptz,                    -- renewed while it writes; after it, taken over
    archived    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ratchet_runs_change ON ratchet_runs (change);
CREATE INDEX ratchet_runs_txid ON ratchet_runs (txid);

CREATE TABLE ratchet_records (
    run_id text NOT NULL,
    seq    bigint NOT NULL,
    line   bytea NOT NULL,
    PRIMARY KEY (run_id, seq)  -- one record per place in a chain: a second writer's insert fails
);

CREATE TABLE ratchet_side_files (
    kind text NOT NULL,
    name text NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (kind, name)
);
