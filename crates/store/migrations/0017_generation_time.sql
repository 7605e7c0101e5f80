-- When the current generation was committed (Unix ms, the writer's clock): servers
-- measure how long a change took to reach them.
INSERT INTO meta (name, value) VALUES ('generation_at', '0');
