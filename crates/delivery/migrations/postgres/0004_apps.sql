-- Apps, Firebase Installation IDs and device age. One deployment serves several apps (Firebase
-- projects): a device belongs to an app (a token is unique within its app), a delivery row
-- records its push's app, and an idempotency key is claimed per app. A device is a registration
-- token or a FID (`kind`), and carries when it was last seen (registered or refreshed): devices
-- not seen for PUSHQ_STALE_DEVICE_DAYS are not sent to. Existing rows become app `default`,
-- tokens, last seen now: `updated_at` says when a token was registered, and an app that
-- registered it once, at install, would otherwise lose every device older than the stale age
-- the moment this runs. Each existing device gets the whole stale age to be registered again. Adding columns with a constant default
-- rewrites no table (PostgreSQL 11 and later).
ALTER TABLE pushq_devices
    ADD COLUMN app TEXT NOT NULL DEFAULT 'default',
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'token' CHECK (kind IN ('token', 'fid')),
    ADD COLUMN last_seen_at TIMESTAMPTZ NULL;
UPDATE pushq_devices SET last_seen_at = now();
ALTER TABLE pushq_devices
    ALTER COLUMN last_seen_at SET DEFAULT now(),
    ALTER COLUMN last_seen_at SET NOT NULL,
    DROP CONSTRAINT pushq_devices_token_key,
    ADD CONSTRAINT pushq_devices_app_token UNIQUE (app, token);
DROP INDEX pushq_devices_user_id;
CREATE INDEX pushq_devices_app_user ON pushq_devices (app, user_id);
CREATE INDEX pushq_devices_last_seen ON pushq_devices (last_seen_at);

ALTER TABLE pushq_deliveries ADD COLUMN app TEXT NOT NULL DEFAULT 'default';
-- "What happened to user U's pushes since T" (DeliveryLog.forUser).
CREATE INDEX pushq_deliveries_user ON pushq_deliveries (user_id, enqueued_at);

ALTER TABLE pushq_key_claims
    ADD COLUMN app TEXT NOT NULL DEFAULT 'default',
    DROP CONSTRAINT pushq_key_claims_pkey,
    ADD PRIMARY KEY (app, idempotency_key, target);
