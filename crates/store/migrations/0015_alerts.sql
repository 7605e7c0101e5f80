-- Alerts as raised, with their delivery state: every alert is kept, delivered or
-- not, so that one a webhook never took is still visible (`keyward alerts list`).
CREATE TABLE alerts (
    id          TEXT   PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    severity    TEXT   NOT NULL,
    key_id      TEXT,
    -- The alert as sent: a JSON object (never a secret).
    body        TEXT   NOT NULL,
    -- pending, delivered, undeliverable, or log_only (no webhook configured).
    delivery    TEXT   NOT NULL,
    attempts    BIGINT NOT NULL,
    last_error  TEXT
);
CREATE INDEX alerts_at ON alerts (at_ms);

-- The source networks each key has been used from (/24 for IPv4, /48 for IPv6),
-- for the new-source alert; kept across restarts.
CREATE TABLE key_sources (
    key_id        TEXT   NOT NULL,
    network       TEXT   NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    PRIMARY KEY (key_id, network)
);
