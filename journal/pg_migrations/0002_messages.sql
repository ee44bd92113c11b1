-- Ratchet's messages in PostgreSQL, version 2 (journal/pg_messages.py).
-- A message for a run (a trigger, a resolution, a cancel, an upgrade): an inbox file that a
-- host's supervisor claimed and checked, or one `ratchet send` posted directly. `body` is the
-- message exactly as its file carries it (a signature still verifies on these bytes); `key`
-- makes posting idempotent (a host that crashed after inserting inserts nothing again) and is
-- the `source_file` the run's journal records when the message is delivered, so a delivery
-- is journaled once, whoever delivers it.

CREATE TABLE ratchet_messages (
    id          bigserial PRIMARY KEY,              -- order of arrival: a run's messages are delivered in it
    key         text NOT NULL UNIQUE,               -- the message's key (journal: source_file)
    run_id      text NOT NULL,
    body        bytea NOT NULL CHECK (octet_length(body) <= 65536),
    format      text NOT NULL CHECK (format IN ('json', 'yaml')),
    answers     bigint,                             -- what the run stood at when it arrived (stale after)
    posted_by   text NOT NULL,                      -- who put it there: a host's inbox, or `ratchet send`
    verified_by text,                               -- the name the posting host proved, if it proved one
    via         text,                               -- how: unix_user, signature, engine
    problem     text,                               -- why the posting host could not prove the sender
    attestation text,                               -- the home key's signature of the host's proof (unix_user, engine)
    state       text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'delivered', 'refused')),
    reason      text,                               -- why it was refused
    posted_at   timestamptz NOT NULL DEFAULT now(),
    settled_at  timestamptz
);
CREATE INDEX ratchet_messages_queued ON ratchet_messages (run_id, id) WHERE state = 'queued';
