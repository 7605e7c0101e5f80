-- Canary keys look like any other key, reach no provider, and raise an alert when used.
ALTER TABLE client_keys ADD COLUMN canary BIGINT NOT NULL DEFAULT 0;
