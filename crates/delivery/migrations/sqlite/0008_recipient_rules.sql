-- Recipient rules (Preferences, the consumer's checks): per (app, user) advertising consent and
-- night-time consent (Korea's Network Act art. 50) with the time of the latest grant and
-- withdrawal of each, quiet hours in an IANA time zone; category opt-outs; and every consent
-- change as it happened (pushq_consent_events: the record an audit asks for). The delivery log
-- marks advertising pushes, which frequency caps count as their own category.
CREATE TABLE pushq_preferences (
    app TEXT NOT NULL,
    user_id TEXT NOT NULL,
    advertising INTEGER NOT NULL DEFAULT 0,
    advertising_granted_at TEXT NULL,
    advertising_withdrawn_at TEXT NULL,
    night INTEGER NOT NULL DEFAULT 0,
    night_granted_at TEXT NULL,
    night_withdrawn_at TEXT NULL,
    quiet_start TEXT NULL,
    quiet_end TEXT NULL,
    time_zone TEXT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (app, user_id)
);
CREATE TABLE pushq_opt_outs (
    app TEXT NOT NULL,
    user_id TEXT NOT NULL,
    category TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (app, user_id, category)
);
CREATE TABLE pushq_consent_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    user_id TEXT NOT NULL,
    consent TEXT NOT NULL,
    granted INTEGER NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX pushq_consent_events_user ON pushq_consent_events (app, user_id, at);
ALTER TABLE pushq_deliveries ADD COLUMN advertising INTEGER NOT NULL DEFAULT 0;
CREATE INDEX pushq_deliveries_caps ON pushq_deliveries (app, user_id, sent_at) WHERE status = 'sent';
