-- Console sign-ins. Only a keyed hash of the session id is stored: a copy of
-- this table lets no one in. A session names the admin key it was opened with;
-- revoking that key ends it.
CREATE TABLE console_sessions (
    id_hash       TEXT   PRIMARY KEY,
    admin_key_id  TEXT   NOT NULL,
    created_ms    BIGINT NOT NULL,
    seen_ms       BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_ms);

-- An alert acknowledged by an operator (in the console): when and by whom.
ALTER TABLE alerts ADD COLUMN acked_ms BIGINT;
ALTER TABLE alerts ADD COLUMN acked_by TEXT;

-- The console reads the audit log newest first, filtered by time.
CREATE INDEX audit_log_at ON audit_log (at);
