//! What the engine's integration tests share: an engine from an environment, queue messages
//! holding a push, and a batch deadline.

use std::time::{Duration, Instant};

use pushq_delivery::{DeliveryConfig, Engine, QueueMessage, WithoutCredentials};
use serde_json::{json, Value};

/// A queue message holding `push` (with a fresh push id), enqueued at `enqueued_at_ms` (epoch
/// milliseconds).
pub fn message_at(push: Value, enqueued_at_ms: i64) -> QueueMessage {
    let id = uuid::Uuid::now_v7().to_string();
    let body = json!({"v": 1, "id": id, "enqueuedAt": enqueued_at_ms, "push": push}).to_string();
    QueueMessage {
        message_id: format!("msg-{id}"),
        body,
        sent_at_ms: 0,
        ..QueueMessage::default()
    }
}

/// A batch's deadline, 20 s away: time enough for any test's sends.
pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// An engine configured from `env` (the FCM emulator's, say), the database at `url` and `extra`
/// settings, with the schema applied; it refuses to start without FCM credentials.
pub async fn engine_from(url: &str, env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Engine {
    let env: Vec<(String, String)> = env
        .into_iter()
        .chain([("DATABASE_URL".to_string(), url.to_owned())])
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let config = DeliveryConfig::from_env_with(|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    let config = DeliveryConfig {
        migrate: true,
        ..config
    };
    Engine::connect(&config, WithoutCredentials::Refuse)
        .await
        .unwrap()
}

/// The AWS SDK reads credentials from the process environment (moto takes any): set once per
/// test binary, for the engines that defer or write audience pages through SQS (not every binary
/// that includes this module has one).
#[allow(dead_code)]
pub fn aws_credentials() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    });
}
