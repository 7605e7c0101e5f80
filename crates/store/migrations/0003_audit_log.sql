-- Append-only, hash-chained audit log. Each entry's MAC covers the previous entry's
-- MAC and its own fields (see keyward-gateway's audit module); `meta.audit_head`
-- holds a MAC of the newest entry, so truncation is detectable too.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    outcome   TEXT   NOT NULL,
    details   TEXT   NOT NULL,
    prev_mac  TEXT   NOT NULL,
    mac       TEXT   NOT NULL
);
