-- pushq schema, PostgreSQL.
CREATE TABLE pushq_devices (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    platform TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    invalidated_at TIMESTAMPTZ NULL
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
    enqueued_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ NULL,
    UNIQUE (push_id, target)
);
CREATE INDEX pushq_deliveries_idempotency ON pushq_deliveries (idempotency_key, target);

CREATE TABLE pushq_rejected (
    queue_message_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
