-- One row per metered request: tokens by kind, what they cost (pico-dollars; NULL
-- when the model has no known price) and whether the usage was reported whole.
-- Written in batches by the servers; never part of the key directory.
CREATE TABLE usage_records (
    at_ms               BIGINT NOT NULL,
    request_id          TEXT   NOT NULL,
    key_id              TEXT   NOT NULL,
    environment         TEXT   NOT NULL,
    provider            TEXT   NOT NULL,
    model               TEXT   NOT NULL,
    endpoint            TEXT   NOT NULL,
    status              BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cache_write_tokens  BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_pico           BIGINT,
    complete            BIGINT NOT NULL
);
CREATE INDEX usage_records_at ON usage_records (at_ms);
CREATE INDEX usage_records_key_at ON usage_records (key_id, at_ms);
