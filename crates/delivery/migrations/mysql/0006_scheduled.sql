-- Scheduled pushes (`sendAt` beyond SQS's delay, and local mode's): written down by the
-- producer before the schedule is created, so that `DeliveryLog.forPush` can say `scheduled`;
-- `cancelPush` sets cancelled_at (writing the row if the push was not scheduled here), and a
-- consumer records each target of a cancelled push `cancelled` instead of sending it.
CREATE TABLE pushq_scheduled (
    push_id VARCHAR(64) NOT NULL PRIMARY KEY,
    app VARCHAR(64) NULL,
    target VARCHAR(600) NULL,
    send_at DATETIME(3) NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    cancelled_at DATETIME(3) NULL
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
