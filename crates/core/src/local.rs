//! Local mode: the delivery engine in-process, without AWS, for development.
//! Pushes go through the same envelope and the same engine as in production, on SQLite by default.

use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::config::{DeliveryConfig, ProducerConfig};
use crate::engine::{Engine, QueueMessage};
use crate::error::Result;

/// Times a batch is tried before local mode gives up on what still fails transiently.
const ATTEMPTS: u32 = 5;

/// Delivers envelopes in-process.
pub struct LocalDelivery {
    config: DeliveryConfig,
    engine: OnceCell<std::result::Result<Engine, String>>,
}

impl LocalDelivery {
    /// Reads the delivery settings (FCM credentials, pool size) from the environment.
    pub fn new(producer: &ProducerConfig) -> Result<LocalDelivery> {
        let mut config = DeliveryConfig::from_env()?;
        // The producer's database (option, else DATABASE_URL, else the default) is the one to use.
        config.database_url = Some(producer.database_url.clone());
        Ok(LocalDelivery {
            config,
            engine: OnceCell::new(),
        })
    }

    async fn engine(&self) -> std::result::Result<&Engine, &str> {
        self.engine
            .get_or_init(|| async {
                // Development convenience: the schema is applied on first use.
                Engine::connect(&self.config, None, true, true)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            .as_ref()
            .map_err(String::as_str)
    }

    /// Delivers a batch of envelope bodies, retrying transient failures a few times.
    pub async fn deliver(&self, bodies: Vec<String>) {
        let engine = match self.engine().await {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!(
                    "pushq local mode: cannot deliver {} push(es): {e}",
                    bodies.len()
                );
                return;
            }
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut batch: Vec<QueueMessage> = bodies
            .into_iter()
            .map(|body| QueueMessage {
                message_id: uuid::Uuid::now_v7().to_string(),
                body,
                sent_at_ms: now_ms,
            })
            .collect();
        for attempt in 1..=ATTEMPTS {
            let deadline = Instant::now() + Duration::from_secs(30);
            match engine.process(&batch, deadline).await {
                Ok(outcome) if outcome.failed_message_ids.is_empty() => return,
                Ok(outcome) => batch.retain(|m| outcome.failed_message_ids.contains(&m.message_id)),
                Err(e) => eprintln!("pushq local mode: delivery attempt {attempt} failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        eprintln!(
            "pushq local mode: {} push(es) still failing after {ATTEMPTS} attempts; giving up",
            batch.len()
        );
    }
}
