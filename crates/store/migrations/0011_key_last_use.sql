-- When each client key was last used, as the servers saw it (written in batches,
-- so up to a flush interval behind). Not part of the key directory: writing it
-- never bumps the generation.
CREATE TABLE key_last_use (
    key_id       TEXT   PRIMARY KEY,
    last_used_at BIGINT NOT NULL
);
