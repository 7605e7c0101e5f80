-- Per-key redaction policy for secrets in traffic (redact | block | alert | off);
-- NULL falls through to the provider's and then the server's setting.
ALTER TABLE client_keys ADD COLUMN redact_inbound TEXT;
ALTER TABLE client_keys ADD COLUMN redact_outbound TEXT;
