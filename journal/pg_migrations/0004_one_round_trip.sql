-- Ratchet's journal in PostgreSQL, version 4: owning a run and letting it go, one round trip
-- each (journal/pg_store.py). Each was a lock probe and a pipelined transaction of three or
-- four statements; as one function call the server does the same work under the same rules.

-- Take the run's session advisory lock (unless the caller holds it already: `try_lock` false
-- after a takeover) and claim its lease; with `create`, make its row first. No row (locked,
-- created, last_seq, head) comes back when the lock is held elsewhere (locked = false), or
-- when the run does not exist or is archived (locked = true: the caller unlocks and says why).
-- The claim's commit does not wait for the disk: the lock is what excludes other writers, a
-- server crash ends every session (and lock) anyway, and the next durable append flushes it.
CREATE FUNCTION ratchet_own(p_run text, p_key bigint, p_owner text, p_lease double precision,
                            p_create boolean, p_genesis text, p_try_lock boolean)
RETURNS TABLE (locked boolean, created boolean, last_seq bigint, head text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    made boolean := false;
BEGIN
    IF p_try_lock AND NOT pg_try_advisory_lock(p_key) THEN
        RETURN QUERY SELECT false, false, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_create THEN
        INSERT INTO ratchet_runs (run_id, head) VALUES (p_run, p_genesis) ON CONFLICT DO NOTHING;
        made := FOUND;
    END IF;
    RETURN QUERY
        UPDATE ratchet_runs AS r SET owner = p_owner, owner_pid = pg_backend_pid(),
               lease_until = now() + p_lease * interval '1 second'
         WHERE r.run_id = p_run AND NOT r.archived
     RETURNING true, made, r.last_seq, r.head;
END
$$;

-- End the writer's lease (only its own: a taker's is left alone) and release the lock. Not
-- durable by itself, like the claim.
CREATE FUNCTION ratchet_release(p_run text, p_owner text, p_key bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE ratchet_runs SET owner = NULL, owner_pid = NULL, lease_until = NULL
     WHERE run_id = p_run AND owner = p_owner;
    RETURN pg_advisory_unlock(p_key);
END
$$;
