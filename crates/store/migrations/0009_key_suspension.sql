-- A suspended key is refused like a revoked one, but can be resumed.
ALTER TABLE client_keys ADD COLUMN suspended_at BIGINT;
ALTER TABLE client_keys ADD COLUMN suspend_reason TEXT;
