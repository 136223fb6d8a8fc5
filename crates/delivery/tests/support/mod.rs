//! What the engine's integration tests share: an engine from an environment.

use pushq_delivery::{DeliveryConfig, Engine, WithoutCredentials};

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
