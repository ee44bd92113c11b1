-- Ratchet's journal in PostgreSQL, version 3: durable deadlines (journal/pg_timers.py).
-- One row per run at rest with a deadline (a wait's timeout, a retry's back-off), set by the
-- run's writer after the journal says so; supervisors claim due rows with FOR UPDATE SKIP
-- LOCKED. The row is a hint the journal confirms: `seq` is the journal's last record when
-- the row was set, so a stale row is recognised and never overwrites a newer one.

CREATE TABLE ratchet_timers (
    run_id        text PRIMARY KEY,
    due_at        timestamptz NOT NULL,   -- on the engine's clock (never the server's now())
    seq           bigint NOT NULL,        -- the journal's last seq when the row was set
    claimed_by    text,                   -- the supervisor that took it, until claimed_until
    claimed_until timestamptz             -- on the server's clock, like a run's lease
);
CREATE INDEX ratchet_timers_due ON ratchet_timers (due_at);
