-- Scheduled rotation of client keys: every `rotate_every` seconds a key gets a new
-- secret (the old one valid for `rotation_grace` more seconds); the owner is told
-- before and receives the new key after, at the webhook whose URL is kept in the
-- vault under `notify_secret` (a webhook URL can itself be a credential).
ALTER TABLE client_keys ADD COLUMN rotate_every BIGINT;
ALTER TABLE client_keys ADD COLUMN rotation_grace BIGINT;
ALTER TABLE client_keys ADD COLUMN next_rotation_at BIGINT;
ALTER TABLE client_keys ADD COLUMN notify_secret TEXT;
-- The `next_rotation_at` whose advance notice has been sent (one replica sends it).
ALTER TABLE client_keys ADD COLUMN rotation_notice_for BIGINT;
