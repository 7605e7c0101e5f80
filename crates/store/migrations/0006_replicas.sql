-- Running servers report the store generation they serve from, so a revocation
-- can wait until every one of them has applied it.
CREATE TABLE replicas (
    id         TEXT   PRIMARY KEY,
    generation BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL
);
