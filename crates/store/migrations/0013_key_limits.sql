-- Who a key belongs to (limits and reports group by it) and its own limits:
-- requests and tokens per minute, requests in flight. NULL: no limit.
ALTER TABLE client_keys ADD COLUMN owner TEXT;
ALTER TABLE client_keys ADD COLUMN rpm BIGINT;
ALTER TABLE client_keys ADD COLUMN tpm BIGINT;
ALTER TABLE client_keys ADD COLUMN max_concurrent BIGINT;
