//! pushq-local: local mode, the delivery engine in-process behind the producer, for development
//! without AWS. Pushes go through the same envelope and the same engine as in production, on
//! SQLite by default; the producer sees only a [`Transport`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushq_delivery::config::DeliveryConfig;
use pushq_delivery::engine::{Engine, QueueMessage, WithoutCredentials};
use pushq_producer::{BoxFuture, Error, Outgoing, Pending, PendingGuard, Result, Transport};
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

/// How much local mode prints on stderr, from `PUSHQ_LOG` (as the Lambda and the CLI read it):
/// `info` (the default) one line per push, `debug` or `trace` also each request FCM would get,
/// `warn`, `error` or `off` only failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Failures only.
    Quiet,
    /// One line per push.
    PerPush,
    /// One line per push and one per device.
    PerDevice,
}

impl Verbosity {
    /// From `PUSHQ_LOG`, read as the Lambda and the CLI read it: its default level is the last
    /// directive without a target (`debug` in `debug,sqlx=warn`); unset or none: `info`.
    pub fn from_env() -> Verbosity {
        Self::from_filter(&std::env::var("PUSHQ_LOG").unwrap_or_default())
    }

    fn from_filter(filter: &str) -> Verbosity {
        let level = filter
            .split(',')
            .map(|d| d.trim().to_ascii_lowercase())
            .rfind(|d| !d.is_empty() && !d.contains('='));
        match level.as_deref() {
            Some("trace" | "debug") => Verbosity::PerDevice,
            Some("off" | "error" | "warn") => Verbosity::Quiet,
            _ => Verbosity::PerPush,
        }
    }
}

/// Delivers envelopes in-process: a producer [`Transport`] over the delivery engine.
///
/// Deliveries run after the producer has its answer, so the binding asks [`LocalDelivery::idle`]
/// when they are done (to keep Node alive meanwhile) and [`LocalDelivery::take_failures`] what
/// went wrong (to report it from `flush()`/`close()`).
pub struct LocalDelivery {
    config: DeliveryConfig,
    engine: OnceCell<Engine>,
    verbosity: Verbosity,
    /// Batches taken and not yet delivered or given up.
    delivering: Arc<Pending>,
    /// What failed since the last [`LocalDelivery::take_failures`].
    failures: Mutex<Vec<String>>,
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
            verbosity: Verbosity::from_env(),
            delivering: Arc::default(),
            failures: Mutex::default(),
        }))
    }

    /// Resolves once no delivery is under way.
    pub async fn idle(&self) {
        self.delivering.idle().await
    }

    /// True while a delivery is under way.
    pub fn is_busy(&self) -> bool {
        self.delivering.count() > 0
    }

    /// What failed since the last call, as one error: pushes that were accepted but could not
    /// be delivered (`Error::Delivery`). `None` when nothing failed.
    pub fn take_failures(&self) -> Option<Error> {
        let failures =
            std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        (!failures.is_empty()).then(|| Error::Delivery(failures.join("; ")))
    }

    fn fail(&self, what: String) {
        eprintln!("pushq local mode: {what}");
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what);
    }

    /// The engine, connected on first use; a failure is reported and tried again next time.
    async fn engine(&self) -> Result<&Engine> {
        self.engine
            .get_or_try_init(|| {
                let print_requests = self.verbosity >= Verbosity::PerDevice;
                Engine::connect(&self.config, WithoutCredentials::LogSink { print_requests })
            })
            .await
            .map_err(|e| Error::Database(format!("local mode cannot open its database: {e}")))
    }

    /// Takes a batch: once the engine is ready the messages are accepted (the in-process queue
    /// has them) and delivered; if the database cannot be opened they are refused, so that
    /// each push's promise says so.
    async fn take(&self, batch: Vec<Outgoing>, _delivering: PendingGuard) {
        let engine = match self.engine().await {
            Ok(engine) => engine,
            Err(e) => return batch.into_iter().for_each(|o| o.refuse(e.clone())),
        };
        let bodies = batch
            .into_iter()
            .map(|o| {
                let body = o.body.clone();
                o.accept();
                body
            })
            .collect();
        self.deliver(engine, bodies).await;
    }

    /// Delivers a batch of envelope bodies, retrying transient failures a few times.
    async fn deliver(&self, engine: &Engine, bodies: Vec<String>) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut batch: Vec<QueueMessage> = bodies
            .into_iter()
            .map(|body| QueueMessage {
                message_id: uuid::Uuid::now_v7().to_string(),
                body,
                sent_at_ms: now_ms,
                ..QueueMessage::default()
            })
            .collect();
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            let deadline = Instant::now() + Duration::from_secs(30);
            match engine.process(&batch, deadline).await {
                Ok(outcome) => {
                    self.summarise(engine, &outcome.push_ids).await;
                    if outcome.failed_message_ids.is_empty() {
                        return;
                    }
                    last_error = format!(
                        "{} target(s) failed transiently (FCM or the network)",
                        outcome.counts.transient
                    );
                    batch.retain(|m| outcome.failed_message_ids.contains(&m.message_id));
                }
                Err(e) => last_error = e.to_string(),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
        let ids: Vec<String> = batch
            .iter()
            .map(|m| {
                pushq_model::Envelope::parse(&m.body, &m.message_id, m.sent_at_ms)
                    .map_or_else(|_| m.message_id.clone(), |e| e.id)
            })
            .collect();
        self.fail(format!(
            "{} push(es) not delivered after {ATTEMPTS} attempts ({}): {last_error}",
            ids.len(),
            ids.join(", ")
        ));
    }

    /// One line per push at `info`: what the log recorded for it.
    async fn summarise(&self, engine: &Engine, push_ids: &[String]) {
        if self.verbosity < Verbosity::PerPush {
            return;
        }
        for id in push_ids {
            let Ok(rows) = engine.store().deliveries_for_push(id).await else {
                continue;
            };
            let mut by_status = std::collections::BTreeMap::<&str, usize>::new();
            for row in &rows {
                *by_status.entry(row.status.as_str()).or_default() += 1;
            }
            let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
            eprintln!("pushq local mode: push {id}: {}", counts.join(", "));
        }
    }
}

impl Transport for LocalDelivery {
    fn send(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, ()> {
        // Counted before the producer hears back, so that the producer's unanswered messages
        // and these deliveries are never both zero while a push is on its way.
        let delivering = self.delivering.enter();
        Box::pin(self.take(batch, delivering))
    }
}

#[cfg(test)]
mod tests {
    use super::Verbosity;

    #[test]
    fn pushq_log_sets_the_default_level_as_tracing_filters_do() {
        for (filter, expected) in [
            ("", Verbosity::PerPush),
            ("info", Verbosity::PerPush),
            ("debug", Verbosity::PerDevice),
            ("info,sqlx=warn", Verbosity::PerPush),
            ("sqlx=debug,warn", Verbosity::Quiet),
            ("pushq=debug", Verbosity::PerPush),
            ("TRACE", Verbosity::PerDevice),
            ("off", Verbosity::Quiet),
        ] {
            assert_eq!(Verbosity::from_filter(filter), expected, "{filter:?}");
        }
    }
}
