-- Audiences (mass sends): an audience push's expansion into pages, one row per push (its state,
-- the keyset cursor over device ids, how many pages and devices it has written), and each page
-- whose targets all reached their final rows. The devices of one app in id order: the keyset.
-- Ids and apps are VARBINARY: compared byte for byte (no padding).
CREATE TABLE pushq_audiences (
    push_id VARBINARY(256) NOT NULL PRIMARY KEY,
    app VARBINARY(64) NOT NULL,
    audience VARBINARY(64) NOT NULL,
    state VARBINARY(16) NOT NULL,
    next_after BIGINT NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    devices BIGINT NOT NULL DEFAULT 0,
    error VARCHAR(300) NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
);
CREATE TABLE pushq_audience_pages (
    push_id VARBINARY(256) NOT NULL,
    page INTEGER NOT NULL,
    done_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (push_id, page)
);
ALTER TABLE pushq_devices ADD INDEX pushq_devices_app_id (app, id);
