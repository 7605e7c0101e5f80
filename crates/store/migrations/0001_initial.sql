-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Provider credentials, sealed (keyward-vault). One row per version; the row with
-- state 'current' serves traffic.
CREATE TABLE secrets (
    name        TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    wrapped_key TEXT   NOT NULL,
    ciphertext  TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

-- Client (virtual) keys. Only a keyed hash of the key is stored.
CREATE TABLE client_keys (
    id            TEXT   PRIMARY KEY,
    key_hash      TEXT   NOT NULL UNIQUE,
    hint          TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    environment   TEXT   NOT NULL,
    models        TEXT   NOT NULL,
    providers     TEXT   NOT NULL,
    endpoints     TEXT   NOT NULL,
    source_cidrs  TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    revoke_reason TEXT
);

INSERT INTO meta (name, value) VALUES ('generation', '0');
