-- pushq schema, SQLite. Timestamps are ISO-8601 text in UTC.
CREATE TABLE pushq_devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    platform TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    invalidated_at TEXT NULL
);
CREATE INDEX pushq_devices_user_id ON pushq_devices (user_id);

CREATE TABLE pushq_deliveries (
    push_id TEXT NOT NULL,
    target TEXT NOT NULL,
    user_id TEXT NULL,
    status TEXT NOT NULL,
    fcm_message_id TEXT NULL,
    error_code TEXT NULL,
    attempts INTEGER NOT NULL,
    category TEXT NULL,
    idempotency_key TEXT NULL,
    enqueued_at TEXT NOT NULL,
    sent_at TEXT NULL,
    UNIQUE (push_id, target)
);
CREATE INDEX pushq_deliveries_idempotency ON pushq_deliveries (idempotency_key, target);

CREATE TABLE pushq_rejected (
    queue_message_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
