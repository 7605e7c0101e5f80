-- A row that audit appends lock (PostgreSQL: SELECT … FOR UPDATE) instead of the
-- generation row, so that writing the audit log never waits on, or holds up, a
-- revocation; changes that carry their own audit entries take both, in that order.
INSERT INTO meta (name, value) VALUES ('audit_lock', '');
