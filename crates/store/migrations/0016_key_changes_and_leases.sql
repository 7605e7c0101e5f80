-- The generation at which each key last changed: servers apply only the keys
-- changed since the generation they serve, instead of reading every key.
ALTER TABLE client_keys ADD COLUMN changed_gen BIGINT NOT NULL DEFAULT 0;
CREATE INDEX client_keys_changed_gen ON client_keys (changed_gen);

-- Jobs that must run on one server at a time (scheduled rotation, credential-age
-- alerts): the server holding a job's lease runs it; a lease not renewed before
-- `until_ms` passes to the next server that asks.
CREATE TABLE leases (
    name      TEXT   PRIMARY KEY,
    holder    TEXT   NOT NULL,
    until_ms  BIGINT NOT NULL
);
