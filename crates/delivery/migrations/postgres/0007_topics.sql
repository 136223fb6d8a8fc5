-- Topic subscriptions (DeviceRegistry.subscribe, `pushq topics`): a user's (every device the user
-- has in the app, now and later) or one token's. Servers write them and enqueue a topic change;
-- the consumer reads them to decide, per device, whether FCM should have it subscribed.
CREATE TABLE pushq_topic_subscriptions (
    id BIGSERIAL PRIMARY KEY,
    app TEXT NOT NULL,
    topic TEXT NOT NULL,
    user_id TEXT NULL,
    token TEXT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) <> (token IS NULL))
);
CREATE UNIQUE INDEX pushq_topic_subscriptions_user ON pushq_topic_subscriptions (app, user_id, topic);
CREATE UNIQUE INDEX pushq_topic_subscriptions_token ON pushq_topic_subscriptions (app, token, topic);
