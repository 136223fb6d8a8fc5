//! The batch delivery engine, one code path for the Lambda, `pushq worker` and local mode.
//! Per batch: one query resolves users, one finds what was delivered, sends run concurrently,
//! one statement writes the log, one invalidates dead tokens, one records rejected messages.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::fcm::{FcmClient, FcmError, Sent};
use crate::push::Target;
use crate::store::{Delivery, Rejected, Store, StoreError};

/// One message of a batch, as SQS delivered it.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// The SQS message id (what a batch item failure names).
    pub message_id: String,
    /// The body: an envelope, or something to reject.
    pub body: String,
    /// SQS `SentTimestamp`, milliseconds since the epoch.
    pub sent_at_ms: i64,
}

/// Where sends go.
pub enum FcmSink {
    /// The real FCM (or an emulator).
    Fcm(Arc<FcmClient>),
    /// Nowhere: each request is logged (local mode without credentials).
    Log,
}

/// Counts for one batch, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Messages in the batch.
    pub messages: usize,
    /// Targets FCM accepted.
    pub sent: usize,
    /// Targets that failed for good.
    pub failed: usize,
    /// Targets whose token was dead (now invalidated).
    pub invalid_tokens: usize,
    /// Users without a live device.
    pub no_devices: usize,
    /// Targets skipped because the log already had them (redelivery, idempotency key).
    pub skipped: usize,
    /// Extra FCM attempts made by retries.
    pub retried: usize,
    /// Targets that still failed transiently (their messages are reported as failures).
    pub transient: usize,
    /// Messages that were not valid envelopes.
    pub rejected: usize,
}

/// What the engine made of a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// Message ids to report as batch item failures (SQS redelivers them).
    pub failed_message_ids: Vec<String>,
    /// Counts for logs and metrics.
    pub counts: BatchCounts,
    /// Enqueue-to-send latency of each target FCM accepted in this batch, in milliseconds.
    pub send_latency_ms: Vec<u64>,
    /// The ids of the pushes in the batch (valid envelopes only).
    pub push_ids: Vec<String>,
}

impl BatchOutcome {
    /// The one log line per batch (JSON through the caller's subscriber), the same for the
    /// Lambda and the worker.
    pub fn log(&self, duration: std::time::Duration) {
        let c = &self.counts;
        tracing::info!(
            batch_size = c.messages,
            sent = c.sent,
            failed = c.failed,
            invalid_tokens = c.invalid_tokens,
            no_devices = c.no_devices,
            skipped = c.skipped,
            retried = c.retried,
            rejected = c.rejected,
            redelivered = self.failed_message_ids.len(),
            duration_ms = duration.as_millis() as u64,
            push_ids = %self.push_ids.join(","),
            "batch done"
        );
    }

    /// Prints the batch's CloudWatch EMF metric lines on stdout (see [`crate::metrics`]).
    pub fn emit_metrics(&self, duration: std::time::Duration, service: &str) {
        crate::metrics::print_emf(self, duration, service);
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most FCM requests in flight per batch.
    pub send_concurrency: usize,
    /// Whether an FCM attempt still in flight at the batch's deadline is cut short (the Lambda,
    /// whose invocation ends there) or may finish (`pushq worker`, which extends visibility).
    pub cut_sends_at_deadline: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            send_concurrency: 64,
            cut_sends_at_deadline: true,
        }
    }
}

/// Delivers batches of queue messages.
pub struct Engine {
    store: Store,
    sink: FcmSink,
    config: EngineConfig,
}

struct Job {
    message: usize,
    envelope: usize,
    target: String,
    token: Option<String>,
    user_id: Option<String>,
}

impl Engine {
    /// An engine over a store and an FCM sink.
    pub fn new(store: Store, sink: FcmSink, config: EngineConfig) -> Engine {
        Engine {
            store,
            sink,
            config,
        }
    }

    /// Lets FCM attempts in flight at a batch's deadline finish instead of cutting them short
    /// (for `pushq worker`, which extends visibility while a batch runs).
    pub fn letting_sends_finish(mut self) -> Engine {
        self.config.cut_sends_at_deadline = false;
        self
    }

    /// The engine's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Delivers one batch; `deadline` bounds retries. A database error fails the whole batch
    /// (every message is redelivered); targets whose row was written are not sent again on
    /// redelivery. Sends whose row was not written (the write failed, the process died) are
    /// repeated: delivery is at least once.
    pub async fn process(
        &self,
        messages: &[QueueMessage],
        deadline: Instant,
    ) -> Result<BatchOutcome, StoreError> {
        let mut counts = BatchCounts {
            messages: messages.len(),
            ..Default::default()
        };
        let mut rejected = Vec::new();
        let mut envelopes = Vec::new(); // (message index, envelope)
        for (i, m) in messages.iter().enumerate() {
            match Envelope::parse(&m.body, &m.message_id, m.sent_at_ms) {
                Ok(e) => envelopes.push((i, e)),
                // Stored as text whatever it holds: U+0000 (which PostgreSQL refuses) becomes
                // U+FFFD, so one hostile message cannot fail its batch forever.
                Err(e) => rejected.push(Rejected {
                    queue_message_id: fit(&m.message_id, 128),
                    body: m.body.replace('\0', "\u{FFFD}"),
                    reason: e.to_string().replace('\0', "\u{FFFD}"),
                }),
            }
        }
        counts.rejected = rejected.len();

        // One query: every user of the batch to their live tokens.
        let mut users: Vec<String> = Vec::new();
        for (_, e) in &envelopes {
            match e.push.target() {
                Target::User(u) => users.push(u.clone()),
                Target::Users(us) => users.extend(us.iter().cloned()),
                _ => {}
            }
        }
        users.sort();
        users.dedup();
        let tokens = if users.is_empty() {
            HashMap::new()
        } else {
            self.store.live_tokens(&users).await?
        };

        // Plan: one job per (push, target); users without devices get a no_devices row.
        let mut jobs = Vec::new();
        let mut rows = Vec::new();
        for (k, (i, e)) in envelopes.iter().enumerate() {
            let mut add = |target: String, token: Option<String>, user_id: Option<String>| {
                jobs.push(Job {
                    message: *i,
                    envelope: k,
                    target,
                    token,
                    user_id,
                });
            };
            match e.push.target() {
                Target::Token(t) => add(t.clone(), Some(t.clone()), None),
                Target::Tokens(ts) => ts
                    .iter()
                    .for_each(|t| add(t.clone(), Some(t.clone()), None)),
                Target::Topic(t) => add(format!("topic:{t}"), None, None),
                Target::Condition(c) => add(format!("condition:{c}"), None, None),
                Target::User(_) | Target::Users(_) => {
                    let ids = match e.push.target() {
                        Target::User(u) => std::slice::from_ref(u),
                        Target::Users(us) => us.as_slice(),
                        _ => &[],
                    };
                    for u in ids {
                        match tokens.get(u) {
                            Some(ts) => ts
                                .iter()
                                .for_each(|t| add(t.clone(), Some(t.clone()), Some(u.clone()))),
                            None => rows.push(row(
                                e,
                                format!("user:{u}"),
                                Some(u.clone()),
                                "no_devices",
                                None,
                                0,
                            )),
                        }
                    }
                }
            }
        }

        // One query: what the log already has for these pushes and idempotency keys.
        let push_ids: Vec<String> = unique(envelopes.iter().map(|(_, e)| e.id.clone()));
        let keys: Vec<String> = unique(
            envelopes
                .iter()
                .filter_map(|(_, e)| e.push.idempotency_key().map(str::to_owned)),
        );
        let done = if envelopes.is_empty() {
            Default::default()
        } else {
            self.store.already_done(&push_ids, &keys).await?
        };
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut seen_keys: HashSet<(String, String)> = HashSet::new();
        let before = jobs.len() + rows.len();
        rows.retain(|r| {
            !done
                .by_push
                .contains(&(r.push_id.clone(), r.target.clone()))
        });
        jobs.retain(|j| {
            let e = &envelopes[j.envelope].1;
            if done.by_push.contains(&(e.id.clone(), j.target.clone())) {
                return false;
            }
            if let Some(key) = e.push.idempotency_key() {
                let pair = (key.to_owned(), j.target.clone());
                if done.by_key.contains(&pair) || !seen_keys.insert(pair) {
                    return false;
                }
            }
            seen.insert((e.id.clone(), j.target.clone()))
        });
        counts.skipped = before - jobs.len() - rows.len();
        counts.no_devices = rows.len();

        // Sends, concurrently. Bodies are built first so the futures own what they send.
        let dry_run = matches!(&self.sink, FcmSink::Fcm(c) if c.dry_run());
        let bodies: Vec<(usize, Value)> = jobs
            .iter()
            .enumerate()
            .map(|(n, job)| {
                let push = &envelopes[job.envelope].1.push;
                let body = match &job.token {
                    Some(token) => push.fcm_request_for_token(token, dry_run),
                    None => push.fcm_request(dry_run).unwrap_or(Value::Null),
                };
                (n, body)
            })
            .collect();
        let sink = &self.sink;
        let results: Vec<(usize, Result<Sent, FcmError>, u32)> = stream::iter(bodies)
            .map(|(n, body)| async move {
                let (result, attempts) = match sink {
                    FcmSink::Fcm(client) => {
                        client
                            .send(&body, deadline, self.config.cut_sends_at_deadline)
                            .await
                    }
                    FcmSink::Log => {
                        // The log sink of local mode: print what FCM would have received.
                        eprintln!("pushq local mode (no FCM credentials): would send {body}");
                        (
                            Ok(Sent {
                                name: format!("local/{}", uuid::Uuid::now_v7()),
                            }),
                            1,
                        )
                    }
                };
                (n, result, attempts)
            })
            .buffer_unordered(self.config.send_concurrency.max(1))
            .collect()
            .await;

        let mut failed_messages: HashSet<usize> = HashSet::new();
        let mut dead_tokens = Vec::new();
        let mut send_latency_ms = Vec::new();
        let now = Utc::now();
        for (n, result, attempts) in results {
            let job = &jobs[n];
            let e = &envelopes[job.envelope].1;
            counts.retried += attempts.saturating_sub(1) as usize;
            let r = |status, error: Option<String>| {
                row(
                    e,
                    job.target.clone(),
                    job.user_id.clone(),
                    status,
                    error,
                    attempts,
                )
            };
            match result {
                Ok(sent) => {
                    counts.sent += 1;
                    let mut d = r("sent", None);
                    d.fcm_message_id = Some(fit(&sent.name, 255)).filter(|n| !n.is_empty());
                    d.sent_at = Some(now);
                    send_latency_ms.push((now - d.enqueued_at).num_milliseconds().max(0) as u64);
                    rows.push(d);
                }
                Err(FcmError::InvalidToken { code, .. }) => {
                    counts.invalid_tokens += 1;
                    dead_tokens.extend(job.token.clone());
                    rows.push(r("invalid_token", Some(code)));
                }
                Err(FcmError::Rejected { code, .. }) => {
                    counts.failed += 1;
                    rows.push(r("failed", Some(code)));
                }
                // Transient, or credentials that do not work: not final, the message comes back.
                Err(error) => {
                    counts.transient += 1;
                    tracing::warn!(push_id = %e.id, code = error.code(), "send failed, will retry on redelivery");
                    failed_messages.insert(job.message);
                }
            }
        }

        // The delivery rows first: once they are written, a later failure (and the redelivery
        // it causes) does not send these targets again.
        if !rows.is_empty() {
            self.store.record_deliveries(&rows).await?;
        }
        if !rejected.is_empty() {
            self.store.record_rejected(&rejected).await?;
        }
        if !dead_tokens.is_empty() {
            self.store.invalidate_tokens(&dead_tokens).await?;
        }
        let mut failed: Vec<usize> = failed_messages.into_iter().collect();
        failed.sort_unstable();
        Ok(BatchOutcome {
            failed_message_ids: failed
                .into_iter()
                .map(|i| messages[i].message_id.clone())
                .collect(),
            counts,
            send_latency_ms,
            push_ids,
        })
    }
}

fn row(
    e: &Envelope,
    target: String,
    user_id: Option<String>,
    status: &'static str,
    error: Option<String>,
    attempts: u32,
) -> Delivery {
    Delivery {
        push_id: e.id.clone(),
        target,
        user_id,
        status,
        fcm_message_id: None,
        // FCM's codes are short; whatever else answers is cut to the column (VARCHAR(64)).
        error_code: error.map(|code| fit(&code, 64)),
        attempts,
        category: e.push.category().map(str::to_owned),
        idempotency_key: e.push.idempotency_key().map(str::to_owned),
        enqueued_at: Utc
            .timestamp_millis_opt(e.enqueued_at)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        sent_at: None,
    }
}

/// `text` cut to at most `chars` characters, without U+0000 (what a text column can hold).
fn fit(text: &str, chars: usize) -> String {
    text.chars()
        .take(chars)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A setting is missing or wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The FCM credentials.
    #[error(transparent)]
    Fcm(#[from] FcmError),
}

impl Engine {
    /// Builds the engine from delivery settings: connects the pool, runs migrations if asked,
    /// and sets up FCM (or, when `allow_log_sink` and no credentials are set, the log sink).
    pub async fn connect(
        config: &crate::config::DeliveryConfig,
        default_database: Option<&str>,
        allow_log_sink: bool,
        migrate: bool,
    ) -> Result<Engine, SetupError> {
        let url = config
            .database_url
            .as_deref()
            .or(default_database)
            .ok_or_else(|| SetupError::Config("DATABASE_URL: not set".into()))?;
        let store = Store::connect(url, config.pool_size).await?;
        if migrate {
            store.migrate().await?;
        }
        let sink = match &config.credentials {
            Some(credentials) => {
                let account = crate::fcm::ServiceAccount::load(credentials)?;
                let fcm = crate::fcm::FcmConfig { endpoint: config.fcm_endpoint.clone(), dry_run: config.dry_run, ..Default::default() };
                FcmSink::Fcm(Arc::new(FcmClient::new(account, &fcm)?))
            }
            None if allow_log_sink => FcmSink::Log,
            None => {
                return Err(SetupError::Config(
                    "FCM credentials: set PUSHQ_FCM_CREDENTIALS (path or JSON) or GOOGLE_APPLICATION_CREDENTIALS".into(),
                ))
            }
        };
        Ok(Engine::new(
            store,
            sink,
            EngineConfig {
                send_concurrency: config.send_concurrency,
                ..EngineConfig::default()
            },
        ))
    }
}
