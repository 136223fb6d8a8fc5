//! pushq-local: local mode, the delivery engine in-process behind the producer, for development
//! without AWS. Pushes go through the same envelope and the same engine as in production, on
//! SQLite by default; the producer sees only a [`Transport`].

mod deliver;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushq_delivery::config::{ConfigError, DeliveryConfig};
use pushq_delivery::engine::{scheduled_after, Deferrer, Engine, SetupError, WithoutCredentials};
use pushq_delivery::store::{LocalMessage, StoreError};
use pushq_producer::{
    BoxFuture, Error, Outgoing, Pending, PendingGuard, Producer, ProducerConfig, ProducerOptions,
    Result, Transport,
};
use tokio::sync::OnceCell;

/// The database of local mode when neither the option nor `DATABASE_URL` names one.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://pushq-dev.db";

/// The database of local mode and of the binding's `DeviceRegistry`/`DeliveryLog`: the option,
/// else `DATABASE_URL`, else [`DEFAULT_DATABASE_URL`].
pub fn database_url(option: Option<String>) -> String {
    database_url_and_source(option).0
}

/// [`database_url`], and where it came from as errors name it: `options.databaseUrl`,
/// `DATABASE_URL`, or the default.
pub fn database_url_and_source(option: Option<String>) -> (String, &'static str) {
    if let Some(url) = option.filter(|u| !u.is_empty()) {
        return (url, "options.databaseUrl");
    }
    match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => (url, "DATABASE_URL"),
        None => (
            DEFAULT_DATABASE_URL.to_owned(),
            "the default database (sqlite://pushq-dev.db)",
        ),
    }
}

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
    /// Where the database URL came from (`options.databaseUrl`, `DATABASE_URL`, the default).
    url_source: &'static str,
    engine: OnceCell<Engine>,
    verbosity: Verbosity,
    /// Batches taken and not yet delivered or given up.
    delivering: Arc<Pending>,
    /// What failed since the last [`LocalDelivery::take_failures`].
    failures: Mutex<Vec<String>>,
    /// Stored messages this process is delivering now, so that it does not pick them up twice.
    in_hand: Mutex<std::collections::HashSet<String>>,
    /// Whether the stored messages of earlier processes were read: once per process, since
    /// whatever this process stores it holds in hand until it is final or given up.
    scanned: std::sync::atomic::AtomicBool,
    /// This delivery, for the timers of scheduled pushes.
    me: std::sync::Weak<LocalDelivery>,
}

impl LocalDelivery {
    /// Reads the delivery settings (FCM credentials, pool size) from the environment; the
    /// database is `database_url`, else `DATABASE_URL`, else [`DEFAULT_DATABASE_URL`].
    pub fn new(database_url: Option<String>) -> Result<Arc<LocalDelivery>> {
        let mut config = DeliveryConfig::from_env().map_err(|e| Error::Config(e.to_string()))?;
        let (url, url_source) = database_url_and_source(database_url);
        config.database_url = Some(url);
        // Development convenience: the schema is applied on first use.
        config.migrate = true;
        Ok(Arc::new_cyclic(|me| LocalDelivery {
            me: me.clone(),
            config,
            url_source,
            engine: OnceCell::new(),
            verbosity: Verbosity::from_env(),
            delivering: Arc::default(),
            failures: Mutex::default(),
            in_hand: Mutex::default(),
            scanned: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The engine's store, connected on first use (`cancelPush` records there).
    pub async fn store(&self) -> Result<&pushq_delivery::store::Store> {
        Ok(self.engine().await?.store())
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

    /// The engine, connected on first use; a failure is reported and tried again next time. A
    /// database that cannot be opened is `Error::Database`, naming where its URL came from; FCM
    /// credentials that cannot be used are `Error::Config`.
    async fn engine(&self) -> Result<&Engine> {
        self.engine
            .get_or_try_init(|| async {
                let print_requests = self.verbosity >= Verbosity::PerDevice;
                let engine =
                    Engine::connect(&self.config, WithoutCredentials::LogSink { print_requests })
                        .await?
                        .with_deferrer(self.deferrer()?);
                engine
                    .store()
                    .ensure_local_queue()
                    .await
                    .map_err(SetupError::Store)?;
                if self.config.credentials.is_none() {
                    // Said once per process, when the first engine starts: nothing reaches a
                    // device.
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| eprintln!("pushq local mode: no FCM credentials (PUSHQ_FCM_CREDENTIALS or GOOGLE_APPLICATION_CREDENTIALS): pushes are recorded dry_run and not sent to any device"));
                }
                Ok(engine)
            })
            .await
            .map_err(|e| self.setup_error(e))
    }

    /// What the recipient rules defer goes back into local mode's own queue, due at the
    /// window's end, as a scheduled push of local mode does (held, and delivered when due by
    /// this process or the next).
    fn deferrer(&self) -> std::result::Result<Arc<dyn Deferrer>, SetupError> {
        let config = ProducerConfig::resolve(ProducerOptions {
            mode: Some("local".into()),
            ..Default::default()
        })
        .map_err(|e| SetupError::Config(ConfigError(e.to_string())))?;
        let transport = Arc::new(Requeue(self.me.clone()));
        let producer = Producer::start(config, transport, &tokio::runtime::Handle::current());
        Ok(Arc::new(producer))
    }

    fn setup_error(&self, e: SetupError) -> Error {
        let source = self.url_source;
        match e {
            SetupError::Store(StoreError::Url(why)) => Error::database(
                format!("local mode cannot open its database: {source}: {why}"),
                None,
            ),
            SetupError::Store(e) => Error::database(
                format!("local mode cannot open its database ({source}): {e}"),
                Some(Arc::new(e)),
            ),
            other => Error::Config(format!("local mode: {other}")),
        }
    }

    /// Takes a batch: each message is stored in the database before it is accepted (so that it
    /// outlives this process), then delivered, with whatever earlier processes or attempts left
    /// stored. If the database cannot be opened or written, the messages are refused, so that
    /// each push's promise says so.
    async fn take(&self, batch: Vec<Outgoing>, _delivering: PendingGuard) {
        let engine = match self.engine().await {
            Ok(engine) => engine,
            Err(e) => return batch.into_iter().for_each(|o| o.refuse(e.clone())),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let messages: Vec<LocalMessage> = batch
            .iter()
            .map(|o| LocalMessage {
                message_id: uuid::Uuid::now_v7().to_string(),
                body: o.body.clone(),
                sent_at_ms: now_ms,
                last_error: None,
            })
            .collect();
        self.hold(&messages);
        if let Err(e) = engine.store().store_local(&messages).await {
            self.release(messages.iter().map(|m| &m.message_id));
            let error = Error::database(
                format!(
                    "local mode could not store the push ({}): {e}",
                    self.url_source
                ),
                Some(Arc::new(e)),
            );
            return batch.into_iter().for_each(|o| o.refuse(error.clone()));
        }
        self.book_scheduled(engine, &messages, now_ms).await;
        batch.into_iter().for_each(Outgoing::accept);
        let mut todo = messages;
        todo.extend(self.stored_not_in_hand(engine).await);
        self.deliver(engine, todo).await;
    }

    /// What `flush()` and `close()` do in local mode: deliver what an earlier process left stored
    /// (it exited, was killed, or gave up on a push that kept failing), unless this process has
    /// read it already. What stays undelivered is reported by [`LocalDelivery::take_failures`].
    pub async fn deliver_stored(&self) {
        if self.engine.get().is_none() && !self.may_hold_stored_pushes() {
            return;
        }
        let _delivering = self.delivering.enter();
        // A database that cannot be opened stores nothing: each push's promise said so already.
        let Ok(engine) = self.engine().await else {
            return;
        };
        let todo = self.stored_not_in_hand(engine).await;
        if !todo.is_empty() {
            self.deliver(engine, todo).await;
        }
    }

    /// Whether the database may hold pushes stored by an earlier process: anything but a SQLite
    /// file that does not exist (which `flush()` would otherwise create).
    fn may_hold_stored_pushes(&self) -> bool {
        let url = self.config.database_url.as_deref().unwrap_or_default();
        !pushq_delivery::store::names_missing_sqlite_file(url)
    }

    /// The stored messages this process is not delivering now, taken in hand: read once per
    /// process (again only after a failed read).
    async fn stored_not_in_hand(&self, engine: &Engine) -> Vec<LocalMessage> {
        use std::sync::atomic::Ordering;
        if self.scanned.swap(true, Ordering::SeqCst) {
            return Vec::new();
        }
        let stored = match engine.store().local_messages().await {
            Ok(stored) => stored,
            Err(e) => {
                self.scanned.store(false, Ordering::SeqCst);
                self.fail(format!("could not read the stored pushes: {e}"));
                return Vec::new();
            }
        };
        let mut in_hand = self.in_hand.lock().unwrap_or_else(|p| p.into_inner());
        stored
            .into_iter()
            .filter(|m| in_hand.insert(m.message_id.clone()))
            .collect()
    }

    fn hold(&self, messages: &[LocalMessage]) {
        let mut in_hand = self.in_hand.lock().unwrap_or_else(|p| p.into_inner());
        in_hand.extend(messages.iter().map(|m| m.message_id.clone()));
    }

    fn release<'a>(&self, ids: impl Iterator<Item = &'a String>) {
        let mut in_hand = self.in_hand.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            in_hand.remove(id);
        }
    }

    /// Writes scheduled pushes down (`DeliveryLog.forPush` says `scheduled`); a failure is
    /// only printed: the push is stored and will be sent when due.
    async fn book_scheduled(&self, engine: &Engine, messages: &[LocalMessage], now_ms: i64) {
        for m in messages {
            let Some(e) = scheduled_after(&m.body, &m.message_id, m.sent_at_ms, now_ms) else {
                continue;
            };
            let at = e.push.send_at_ms().unwrap_or(now_ms);
            let send_at = chrono::DateTime::from_timestamp_millis(at).unwrap_or_default();
            let target = e.push.target().summary();
            if let Err(err) = engine
                .store()
                .record_scheduled(&e.id, e.push.app(), &target, send_at)
                .await
            {
                eprintln!("pushq local mode: could not write scheduled push {} down (it is stored and will be sent when due): {err}", e.id);
            }
        }
    }

    /// Sets a timer for stored messages not due yet: each is delivered when due, by this
    /// process if it still runs (the timer does not keep Node alive), else by the next one.
    fn deliver_when_due(&self, later: Vec<(LocalMessage, i64)>) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            let mut later = later;
            later.sort_by_key(|(_, at)| *at);
            for (m, at) in later {
                let wait = at - chrono::Utc::now().timestamp_millis();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
                let _delivering = me.delivering.enter();
                if let Ok(engine) = me.engine().await {
                    me.deliver(engine, vec![m]).await;
                }
            }
        });
    }
}

/// Local mode's delivery as the transport of its own deferrals (held weakly: the engine that
/// defers belongs to the delivery).
struct Requeue(std::sync::Weak<LocalDelivery>);

impl Transport for Requeue {
    fn send(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, ()> {
        match self.0.upgrade() {
            Some(local) => Box::pin(async move { local.send(batch).await }),
            None => Box::pin(async move {
                for o in batch {
                    o.refuse(Error::Closed);
                }
            }),
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
