-- Scheduled pushes (`sendAt` beyond SQS's delay, and local mode's): written down by the
-- producer before the schedule is created, so that `DeliveryLog.forPush` can say `scheduled`;
-- `cancelPush` sets cancelled_at (writing the row if the push was not scheduled here), and a
-- consumer records each target of a cancelled push `cancelled` instead of sending it.
CREATE TABLE pushq_scheduled (
    push_id TEXT NOT NULL PRIMARY KEY,
    app TEXT NULL,
    target TEXT NULL,
    send_at TEXT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    cancelled_at TEXT NULL
);
