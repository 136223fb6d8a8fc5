-- Recipient rules (Preferences, the consumer's checks): per (app, user) advertising consent and
-- night-time consent (Korea's Network Act art. 50) with the time of the latest grant and
-- withdrawal of each, quiet hours in an IANA time zone; category opt-outs; and every consent
-- change as it happened (pushq_consent_events: the record an audit asks for). The delivery log
-- marks advertising pushes, which frequency caps count as their own category.
-- Ids, apps and categories are VARBINARY: compared byte for byte (no padding).
CREATE TABLE pushq_preferences (
    app VARBINARY(64) NOT NULL,
    user_id VARBINARY(1020) NOT NULL,
    advertising BOOLEAN NOT NULL DEFAULT FALSE,
    advertising_granted_at DATETIME(3) NULL,
    advertising_withdrawn_at DATETIME(3) NULL,
    night BOOLEAN NOT NULL DEFAULT FALSE,
    night_granted_at DATETIME(3) NULL,
    night_withdrawn_at DATETIME(3) NULL,
    quiet_start VARBINARY(5) NULL,
    quiet_end VARBINARY(5) NULL,
    time_zone VARBINARY(64) NULL,
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (app, user_id)
);
CREATE TABLE pushq_opt_outs (
    app VARBINARY(64) NOT NULL,
    user_id VARBINARY(1020) NOT NULL,
    category VARBINARY(400) NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (app, user_id, category)
);
CREATE TABLE pushq_consent_events (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app VARBINARY(64) NOT NULL,
    user_id VARBINARY(1020) NOT NULL,
    consent VARBINARY(16) NOT NULL,
    granted BOOLEAN NOT NULL,
    at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    INDEX pushq_consent_events_user (app, user_id, at)
);
ALTER TABLE pushq_deliveries ADD COLUMN advertising BOOLEAN NOT NULL DEFAULT FALSE,
    ADD INDEX pushq_deliveries_caps (app, user_id, sent_at);
