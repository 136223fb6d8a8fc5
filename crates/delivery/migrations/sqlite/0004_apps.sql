-- Apps, Firebase Installation IDs and device age. One deployment serves several apps (Firebase
-- projects): a device belongs to an app (a token is unique within its app), a delivery row
-- records its push's app, and an idempotency key is claimed per app. A device is a registration
-- token or a FID (`kind`), and carries when it was last seen (registered or refreshed): devices
-- not seen for PUSHQ_STALE_DEVICE_DAYS are not sent to. Existing rows become app `default`,
-- tokens, last seen now: `updated_at` says when a token was registered, and an app that
-- registered it once, at install, would otherwise lose every device older than the stale age
-- the moment this runs. Each existing device gets the whole stale age to be registered again.
-- SQLite cannot drop a UNIQUE or PRIMARY KEY constraint: the devices and key claims tables are
-- rebuilt with their rows.
CREATE TABLE pushq_devices_0004 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL DEFAULT 'default',
    user_id TEXT NOT NULL,
    token TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'token' CHECK (kind IN ('token', 'fid')),
    platform TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    invalidated_at TEXT NULL,
    UNIQUE (app, token)
);
INSERT INTO pushq_devices_0004 (id, user_id, token, platform, created_at, updated_at, invalidated_at)
SELECT id, user_id, token, platform, created_at, updated_at, invalidated_at FROM pushq_devices;
DROP TABLE pushq_devices;
ALTER TABLE pushq_devices_0004 RENAME TO pushq_devices;
CREATE INDEX pushq_devices_app_user ON pushq_devices (app, user_id);
CREATE INDEX pushq_devices_last_seen ON pushq_devices (last_seen_at);

ALTER TABLE pushq_deliveries ADD COLUMN app TEXT NOT NULL DEFAULT 'default';
-- "What happened to user U's pushes since T" (DeliveryLog.forUser).
CREATE INDEX pushq_deliveries_user ON pushq_deliveries (user_id, enqueued_at);

CREATE TABLE pushq_key_claims_0004 (
    app TEXT NOT NULL DEFAULT 'default',
    idempotency_key TEXT NOT NULL,
    target TEXT NOT NULL,
    push_id TEXT NOT NULL,
    payload_hash TEXT NULL,
    claimed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (app, idempotency_key, target)
);
INSERT INTO pushq_key_claims_0004 (idempotency_key, target, push_id, payload_hash, claimed_at)
SELECT idempotency_key, target, push_id, payload_hash, claimed_at FROM pushq_key_claims;
DROP TABLE pushq_key_claims;
ALTER TABLE pushq_key_claims_0004 RENAME TO pushq_key_claims;
