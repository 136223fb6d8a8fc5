//! pushq-local: local mode, the delivery engine in-process behind the producer, for development
//! without AWS. Pushes go through the same envelope and the same engine as in production, on
//! SQLite by default; the producer sees only a [`Transport`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushq_delivery::config::DeliveryConfig;
use pushq_delivery::engine::{Engine, QueueMessage, WithoutCredentials};
use pushq_producer::{BoxFuture, Error, Outgoing, Result, Transport};
use tokio::sync::OnceCell;

/// The database of local mode when neither the option nor `DATABASE_URL` names one.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://pushq-dev.db";

/// The database of local mode and of the binding's `DeviceRegistry`/`DeliveryLog`: the option,
/// else `DATABASE_URL`, else [`DEFAULT_DATABASE_URL`].
pub fn database_url(option: Option<String>) -> String {
    option
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// Times a batch is tried before local mode gives up on what still fails transiently.
const ATTEMPTS: u32 = 5;

/// Delivers envelopes in-process: a producer [`Transport`] over the delivery engine.
pub struct LocalDelivery {
    config: DeliveryConfig,
    engine: OnceCell<Engine>,
}

impl LocalDelivery {
    /// Reads the delivery settings (FCM credentials, pool size) from the environment; the
    /// database is `database_url`, else `DATABASE_URL`, else [`DEFAULT_DATABASE_URL`].
    pub fn new(database_url: Option<String>) -> Result<Arc<LocalDelivery>> {
        let mut config = DeliveryConfig::from_env().map_err(|e| Error::Config(e.to_string()))?;
        config.database_url = Some(self::database_url(database_url));
        // Development convenience: the schema is applied on first use.
        config.migrate = true;
        Ok(Arc::new(LocalDelivery {
            config,
            engine: OnceCell::new(),
        }))
    }

    /// The engine, connected on first use; a failure is reported and tried again next time.
    async fn engine(&self) -> std::result::Result<&Engine, String> {
        self.engine
            .get_or_try_init(|| Engine::connect(&self.config, WithoutCredentials::LogSink))
            .await
            .map_err(|e| e.to_string())
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
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
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

impl Transport for LocalDelivery {
    fn send(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, ()> {
        let bodies = batch
            .into_iter()
            .map(|o| {
                let body = o.body.clone();
                // Accepted: in local mode the in-process queue is the queue.
                o.accept();
                body
            })
            .collect();
        Box::pin(self.deliver(bodies))
    }
}
