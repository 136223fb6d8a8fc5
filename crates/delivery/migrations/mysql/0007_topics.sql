-- Topic subscriptions (DeviceRegistry.subscribe, `pushq topics`): a user's (every device the user
-- has in the app, now and later) or one token's. Servers write them and enqueue a topic change;
-- the consumer reads them to decide, per device, whether FCM should have it subscribed. A token's
-- row with ended_at set is a tombstone: not wanted, not listed, but kept so that a device
-- unregistered (or moved to another user) is unsubscribed from it again when the first enqueue
-- of that change failed and the call is repeated.
-- Topics, user ids and tokens are VARBINARY: compared byte for byte (no padding), and both
-- unique keys fit InnoDB's 3072 bytes (a 500-byte topic beside a 512-byte token).
CREATE TABLE pushq_topic_subscriptions (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app VARBINARY(64) NOT NULL,
    topic VARBINARY(500) NOT NULL,
    user_id VARBINARY(1020) NULL,
    token VARBINARY(512) NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    ended_at DATETIME(3) NULL,
    CHECK ((user_id IS NULL) <> (token IS NULL)),
    UNIQUE KEY pushq_topic_subscriptions_user (app, user_id, topic),
    UNIQUE KEY pushq_topic_subscriptions_token (app, token, topic)
);
