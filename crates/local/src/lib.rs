//! pushq-local: local mode, the delivery engine in-process behind the producer, for development
//! without AWS. Pushes go through the same envelope and the same engine as in production, on
//! SQLite by default; the producer sees only a [`Transport`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushq_delivery::config::DeliveryConfig;
use pushq_delivery::engine::{
    scheduled_after, Engine, QueueMessage, SetupError, WithoutCredentials,
};
use pushq_delivery::store::{DeliveryStatus, LocalMessage, StoreError};
use pushq_producer::{BoxFuture, Error, Outgoing, Pending, PendingGuard, Result, Transport};
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

/// Times a batch is tried before local mode gives up on what still fails transiently.
const ATTEMPTS: u32 = 5;
/// How long one attempt retries transient FCM answers (as a Lambda invocation would): with the
/// pauses between attempts, local mode gives up on a push within about 20 s, saying why at each
/// attempt.
const ATTEMPT_TIME: Duration = Duration::from_secs(3);

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
                        .await?;
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

    fn setup_error(&self, e: SetupError) -> Error {
        let source = self.url_source;
        match e {
            SetupError::Store(StoreError::Url(why)) => Error::Database(format!(
                "local mode cannot open its database: {source}: {why}"
            )),
            SetupError::Store(e) => Error::Database(format!(
                "local mode cannot open its database ({source}): {e}"
            )),
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
            let error = Error::Database(format!(
                "local mode could not store the push ({}): {e}",
                self.url_source
            ));
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

    /// Delivers stored messages, retrying transient failures a few times; what becomes final is
    /// forgotten, what does not stays stored (with why) for `flush()` or the next process.
    /// Messages not due yet (`sendAt`) wait for their time ([`LocalDelivery::deliver_when_due`]).
    async fn deliver(&self, engine: &Engine, todo: Vec<LocalMessage>) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut later = Vec::new();
        let mut due = Vec::with_capacity(todo.len());
        for m in todo {
            match scheduled_after(&m.body, &m.message_id, m.sent_at_ms, now_ms) {
                Some(e) => later.push((m, e.push.send_at_ms().unwrap_or(now_ms))),
                None => due.push(m),
            }
        }
        if !later.is_empty() {
            self.deliver_when_due(later);
        }
        let todo = due;
        if todo.is_empty() {
            return;
        }
        let mut batch: Vec<QueueMessage> = todo
            .into_iter()
            .map(|m| QueueMessage {
                message_id: m.message_id,
                body: m.body,
                sent_at_ms: m.sent_at_ms,
                ..QueueMessage::default()
            })
            .collect();
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            let deadline = Instant::now() + ATTEMPT_TIME;
            match engine.process(&batch, deadline).await {
                Ok(outcome) => {
                    let (waiting, done): (Vec<QueueMessage>, Vec<QueueMessage>) = batch
                        .into_iter()
                        .partition(|m| outcome.failed_message_ids.contains(&m.message_id));
                    // The batch's pushes, and those handed back whole (an app without a key).
                    let mut push_ids = outcome.push_ids.clone();
                    push_ids.extend(waiting.iter().map(push_id_of));
                    push_ids.sort();
                    push_ids.dedup();
                    let codes = self.summarise(engine, &push_ids).await;
                    let done: Vec<String> = done.into_iter().map(|m| m.message_id).collect();
                    if let Err(e) = engine.store().forget_local(&done).await {
                        eprintln!("pushq local mode: could not forget delivered pushes (they will be skipped when tried again): {e}");
                    }
                    self.release(done.iter());
                    batch = waiting;
                    if batch.is_empty() {
                        return;
                    }
                    last_error = format!(
                        "{} target(s) not final ({})",
                        outcome.counts.transient + outcome.counts.no_credentials,
                        if codes.is_empty() {
                            "FCM or the network".to_owned()
                        } else {
                            codes.join(", ")
                        }
                    );
                }
                Err(e) => last_error = e.to_string(),
            }
            if attempt < ATTEMPTS {
                let pause = Duration::from_millis(200 << attempt);
                eprintln!(
                    "pushq local mode: attempt {attempt} of {ATTEMPTS} failed: {last_error}; trying again in {:.1} s",
                    pause.as_secs_f64()
                );
                tokio::time::sleep(pause).await;
            }
        }
        let ids: Vec<String> = batch.iter().map(|m| m.message_id.clone()).collect();
        let _ = engine.store().note_local_error(&ids, &last_error).await;
        // Kept in hand: this process has given up on them; the next one tries them again.
        let push_ids: Vec<String> = batch.iter().map(push_id_of).collect();
        self.fail(format!(
            "{} push(es) not delivered after {ATTEMPTS} attempts ({}): {last_error}; they stay stored, and the next local-mode process tries them again",
            push_ids.len(),
            push_ids.join(", ")
        ));
    }

    /// One line per push at `info`: what the log recorded for it, with the error codes of what
    /// is not final (`retrying 1 (UNAVAILABLE)`). Returns those codes, once each.
    async fn summarise(&self, engine: &Engine, push_ids: &[String]) -> Vec<String> {
        let mut waiting = std::collections::BTreeSet::new();
        for id in push_ids {
            let Ok(rows) = engine.store().deliveries_for_push(id).await else {
                continue;
            };
            let mut by_status = std::collections::BTreeMap::<&str, (usize, Vec<&str>)>::new();
            for row in &rows {
                let entry = by_status.entry(row.status.as_str()).or_default();
                entry.0 += 1;
                if let Some(code) = row.error_code.as_deref() {
                    if !entry.1.contains(&code) {
                        entry.1.push(code);
                    }
                    if row.status == DeliveryStatus::Retrying.as_str() {
                        waiting.insert(code.to_owned());
                    }
                }
            }
            if self.verbosity < Verbosity::PerPush {
                continue;
            }
            let counts: Vec<String> = by_status
                .iter()
                .map(|(s, (n, codes))| match codes.is_empty() {
                    true => format!("{s} {n}"),
                    false => format!("{s} {n} ({})", codes.join(", ")),
                })
                .collect();
            eprintln!("pushq local mode: push {id}: {}", counts.join(", "));
        }
        waiting.into_iter().collect()
    }
}

/// The push id of a stored message (its queue message id when it is not a readable envelope).
fn push_id_of(m: &QueueMessage) -> String {
    pushq_model::Envelope::parse(&m.body, &m.message_id, m.sent_at_ms)
        .map_or_else(|_| m.message_id.clone(), |e| e.id)
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
