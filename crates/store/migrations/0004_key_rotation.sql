-- Rotation with a grace window: the previous secret's hash keeps working until
-- prev_valid_until.
ALTER TABLE client_keys ADD COLUMN prev_key_hash TEXT;
ALTER TABLE client_keys ADD COLUMN prev_valid_until BIGINT;
