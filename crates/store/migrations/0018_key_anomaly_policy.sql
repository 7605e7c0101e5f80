-- A key's own response to severe anomalies (`alert` or `suspend`); NULL: the
-- server's [watch] on_anomaly.
ALTER TABLE client_keys ADD COLUMN on_anomaly TEXT;
