-- Audiences (mass sends): an audience push's expansion into pages, one row per push (its state,
-- the keyset cursor over device ids, how many pages and devices it has written), and each page
-- whose targets all reached their final rows. The devices of one app in id order: the keyset.
CREATE TABLE pushq_audiences (
    push_id TEXT NOT NULL PRIMARY KEY,
    app TEXT NOT NULL,
    audience TEXT NOT NULL,
    state TEXT NOT NULL,
    next_after INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    devices INTEGER NOT NULL DEFAULT 0,
    error TEXT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE pushq_audience_pages (
    push_id TEXT NOT NULL,
    page INTEGER NOT NULL,
    done_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (push_id, page)
);
CREATE INDEX pushq_devices_app_id ON pushq_devices (app, id);
