-- Apps, Firebase Installation IDs and device age. One deployment serves several apps (Firebase
-- projects): a device belongs to an app (a token is unique within its app), a delivery row
-- records its push's app, and an idempotency key is claimed per app. A device is a registration
-- token or a FID (`kind`), and carries when it was last seen (registered or refreshed): devices
-- not seen for PUSHQ_STALE_DEVICE_DAYS are not sent to. Existing rows become app `default`,
-- tokens, last seen now: `updated_at` says when a token was registered, and an app that
-- registered it once, at install, would otherwise lose every device older than the stale age
-- the moment this runs. Each existing device gets the whole stale age to be registered again.
-- The key claims' target column shrinks to 540 characters (the longest target pushq writes is
-- 516: `fid:` and a 512-character id) so that (app, key, target) fits InnoDB's 3072-byte key.
ALTER TABLE pushq_devices
    ADD COLUMN app VARCHAR(64) NOT NULL DEFAULT 'default',
    ADD COLUMN kind VARCHAR(8) NOT NULL DEFAULT 'token',
    ADD COLUMN last_seen_at DATETIME(3) NULL;
UPDATE pushq_devices SET last_seen_at = UTC_TIMESTAMP(3);
ALTER TABLE pushq_devices
    MODIFY last_seen_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    DROP INDEX token,
    ADD UNIQUE KEY pushq_devices_app_token (app, token),
    DROP INDEX pushq_devices_user_id,
    ADD INDEX pushq_devices_app_user (app, user_id),
    ADD INDEX pushq_devices_last_seen (last_seen_at);

ALTER TABLE pushq_deliveries
    ADD COLUMN app VARCHAR(64) NOT NULL DEFAULT 'default',
    ADD INDEX pushq_deliveries_user (user_id, enqueued_at);

ALTER TABLE pushq_key_claims
    ADD COLUMN app VARCHAR(64) NOT NULL DEFAULT 'default' FIRST,
    MODIFY target VARCHAR(540) NOT NULL,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (app, idempotency_key, target);
