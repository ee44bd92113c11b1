-- Ratchet's messages in PostgreSQL, version 5: retention of settled rows (journal/pg_messages.py).
-- A settled row (delivered, or refused with its reason) is kept for a stated time for people,
-- then deleted by supervisors in small batches: the oldest first, by this index, never a scan of
-- the table. `ratchet archive` deletes an archived run's settled rows by the second one. Queued
-- rows are in neither: nothing deletes them. The run's journal, not the row, says whether a
-- message was applied (its key is the `source_file` of the decision), so a row deleted and
-- posted again under the same key applies nothing twice.

CREATE INDEX ratchet_messages_settled ON ratchet_messages (settled_at) WHERE state <> 'queued';
CREATE INDEX ratchet_messages_settled_run ON ratchet_messages (run_id) WHERE state <> 'queued';
-- A settled row has its time (the retention counts from it); NOT VALID: rows already there,
-- even ones written by hand, do not fail the migration (a settled row without a time is never
-- deleted by the retention; `ratchet archive` still deletes it with its run's rows).
ALTER TABLE ratchet_messages ADD CONSTRAINT ratchet_messages_settled_at
    CHECK (state = 'queued' OR settled_at IS NOT NULL) NOT VALID;
