-- The end user of a request authenticated by an identity token
-- (`issuer:subject`; NULL for requests made with a Keyward key), and the owner
-- the request counted under when it was made (an identity rule's owner has no
-- key row to be read from). Per-user and per-owner spend is summed from them.
ALTER TABLE usage_records ADD COLUMN subject TEXT;
ALTER TABLE usage_records ADD COLUMN owner TEXT;
CREATE INDEX usage_records_subject_at ON usage_records (subject, at_ms);
