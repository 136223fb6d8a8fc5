-- Topic subscriptions (DeviceRegistry.subscribe, `pushq topics`): a user's (every device the user
-- has in the app, now and later) or one token's. Servers write them and enqueue a topic change;
-- the consumer reads them to decide, per device, whether FCM should have it subscribed. A token's
-- row with ended_at set is a tombstone: not wanted, not listed, but kept so that a device
-- unregistered (or moved to another user) is unsubscribed from it again when the first enqueue
-- of that change failed and the call is repeated.
CREATE TABLE pushq_topic_subscriptions (
    id BIGSERIAL PRIMARY KEY,
    app TEXT NOT NULL,
    topic TEXT NOT NULL,
    user_id TEXT NULL,
    token TEXT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at TIMESTAMPTZ NULL,
    CHECK ((user_id IS NULL) <> (token IS NULL))
);
CREATE UNIQUE INDEX pushq_topic_subscriptions_user ON pushq_topic_subscriptions (app, user_id, topic);
CREATE UNIQUE INDEX pushq_topic_subscriptions_token ON pushq_topic_subscriptions (app, token, topic);
