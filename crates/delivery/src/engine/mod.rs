//! The batch delivery engine, one code path for the Lambda, `pushq worker` and local mode.
//!
//! Every (push, target) of a batch is one target in one list, in one state at a time
//! (`batch::State`; the states and their transitions are drawn at the top of `batch.rs`). A batch
//! goes through these phases, in order ([`Engine::process`] reads as this list):
//! 1. **parse** (`Batch::parse`): each message becomes a push, or a rejected row; a push for an
//!    app without an FCM key is handed back whole (`Batch::hand_back_apps_without_keys`);
//! 2. **resolve users** (`Engine::resolve_users`): one query maps every (app, user id) of the
//!    batch to its live devices (tokens and FIDs), leaving out and counting stale ones;
//! 3. **plan** (`Batch::plan`): one target per (push, device, topic or condition), to send, or to
//!    record without a send (a user without live devices, a push expired, cancelled or over FCM's
//!    payload limit);
//! 4. **claim** (`Engine::claim`): one statement claims every planned (push, target) for this
//!    batch (the batch's one deduplication point; what is final already is skipped; what another
//!    consumer holds is handed back), and one more the (idempotency key, target)s of keyed
//!    pushes (another push's are `duplicate`);
//! 5. **send** (`Engine::send`): the claimed targets go to the [`Sink`], concurrently, within
//!    the deadline;
//! 6. **classify** (`Batch::classify`): each answer makes its target final, or hands it back;
//! 7. **settle** (`Batch::settle`): rows, dead devices, hand-backs and counts, derived once from
//!    the targets' states;
//! 8. **record** (`Engine::record`): one statement each for the delivery rows, the rejected
//!    messages and the dead tokens;
//! 9. **audiences** (`Engine::expand_audiences`, in `audience.rs`): each audience push (not a
//!    page of one) is expanded into pages, written to the queue; a page is a push like any
//!    other in phases 2–8, its devices resolved by id range in phase 2;
//! 10. **topic changes** (`Engine::manage_topics`, in `topics.rs`): the batch's topic
//!     subscription changes, brought in line with the database through FCM's topic calls.

mod audience;
mod batch;
mod connect;
mod defer;
mod early;
mod fifo;
mod message;
mod resolve;
mod topics;

pub use audience::{DEFAULT_AUDIENCE_PAGE_SIZE, PAGES_PER_STEP, UNKNOWN_SEGMENT};
pub use connect::SetupError;
pub use defer::{Deferrer, DEFER_FAILED, NO_DEFER_QUEUE};
use early::due_at;
pub use early::scheduled_after;
pub use message::{QueueMessage, FIRST_MESSAGE_ID};
pub use topics::TOPIC_CALLS_AT_ONCE;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use self::batch::{Batch, Expiry, Settled};
pub use crate::config::PushPolicy;
use crate::outcome::BatchOutcome;
use crate::request::RequestBodies;
use crate::rules::RecipientRules;
use crate::sink::{Attempted, Sink};
use crate::store::{Claim, DeviceKind, Store, StoreError};
use pushq_model::Recipient;

/// What [`Engine::connect`] does when no FCM credentials are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutCredentials {
    /// Fail: the Lambda and `pushq worker` must send for real.
    Refuse,
    /// Send nothing and record each target `dry_run` (local mode, for development), printing
    /// each request FCM would have received when `print_requests`.
    LogSink {
        /// Print each request on stderr.
        print_requests: bool,
    },
}

/// Delivers batches of queue messages.
pub struct Engine {
    store: Store,
    sink: Arc<dyn Sink>,
    send_concurrency: usize,
    statement_timeout: Duration,
    policy: PushPolicy,
    rules: RecipientRules,
    deferrer: Option<Arc<dyn Deferrer>>,
    clock: Clock,
    audience_page_size: u32,
}

/// What the engine reads the time of day from: the system clock, or (in tests) a set one.
pub type Clock = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

impl Engine {
    /// An engine over a store and a sink, with at most `send_concurrency` sends in flight.
    pub fn new(store: Store, sink: Arc<dyn Sink>, send_concurrency: usize) -> Engine {
        Engine {
            store,
            sink,
            send_concurrency: send_concurrency.max(1),
            statement_timeout: Duration::from_millis(crate::config::DEFAULT_STATEMENT_TIMEOUT_MS),
            policy: PushPolicy::default(),
            rules: RecipientRules::default(),
            deferrer: None,
            clock: Arc::new(chrono::Utc::now),
            audience_page_size: DEFAULT_AUDIENCE_PAGE_SIZE,
        }
    }

    /// The same engine, cutting audience pushes into pages of `size` devices (at least 1).
    pub fn with_audience_page_size(self, size: u32) -> Engine {
        Engine {
            audience_page_size: size.max(1),
            ..self
        }
    }

    /// The same engine, with these limits on device and push age.
    pub fn with_policy(self, policy: PushPolicy) -> Engine {
        Engine { policy, ..self }
    }

    /// The same engine, giving each database statement of a batch at most `timeout`.
    pub fn with_statement_timeout(self, timeout: Duration) -> Engine {
        Engine {
            statement_timeout: timeout,
            ..self
        }
    }

    /// Runs one store call of a batch within the statement timeout and, when `cut_at` is given,
    /// not past it. Past either, pushq stops waiting ([`StoreError::TimedOut`]); the dropped
    /// call closes its connection, so the batch fails like on any database error.
    async fn timed<T>(
        &self,
        what: &'static str,
        cut_at: Option<Instant>,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut limit = self.statement_timeout;
        if let Some(cut_at) = cut_at {
            limit = limit.min(cut_at.saturating_duration_since(Instant::now()));
        }
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(StoreError::TimedOut {
                what,
                limit_ms: limit.as_millis() as u64,
            })
        })
    }

    /// The engine's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Until when sends are held back by the FCM project's quota throttle, if they are now.
    pub fn throttled_until(&self) -> Option<Instant> {
        self.sink.throttled_until()
    }

    /// Delivers one batch; `deadline` bounds retries. A database error fails the whole batch
    /// (every message is redelivered); targets whose row was written are not sent again on
    /// redelivery. A target is sent only under this batch's claim, which lapses at the deadline
    /// (with the time the log write may take): sends whose row was not written (the write
    /// failed, the process died) are repeated once the claim lapses, so delivery is at least
    /// once there and only there.
    ///
    /// A scheduled push whose copy arrives before its `sendAt` (the scheduler fires within its
    /// minute) is held: the rest of the batch goes first, then the batch waits for it and sends
    /// it when due, if that leaves time to send before the deadline; else its message is handed
    /// back, to come again after the queue's visibility timeout.
    pub async fn process(
        &self,
        messages: &[QueueMessage],
        deadline: Instant,
    ) -> Result<BatchOutcome, StoreError> {
        let now_ms = self.now().timestamp_millis();
        // When each early copy is due (read once: only bodies that mention `sendAt` are parsed).
        let due: Vec<Option<i64>> = messages.iter().map(|m| due_at(m, now_ms)).collect();
        if due.iter().all(Option::is_none) {
            return self.process_due(messages, deadline).await;
        }
        self.process_with_early_copies(messages, &due, deadline)
            .await
    }

    /// [`Engine::process`] for messages that are due: the phases, in order (each target's
    /// states are in [`batch`]).
    async fn process_due(
        &self,
        messages: &[QueueMessage],
        deadline: Instant,
    ) -> Result<BatchOutcome, StoreError> {
        // PUSHQ_FCM_DRY_RUN: every push of the deployment is a dry run.
        let mut batch = Batch::parse(messages, self.sink.validate_only());
        let changes = std::mem::take(&mut batch.changes);
        let expansions = std::mem::take(&mut batch.expansions);
        batch.hand_back_apps_without_keys(|app| self.sink.has_app(app));
        let devices = self.resolve_users(&batch, deadline).await?;
        let now = self.now();
        let expiry = Expiry {
            now_ms: now.timestamp_millis(),
            max_age_ms: self.policy.max_push_age.map(|d| d.as_millis() as i64),
        };
        let cancelled = self.cancelled(&batch, deadline).await?;
        batch.plan(&devices, expiry, &cancelled);
        self.apply_rules(&mut batch, now, deadline).await?;
        self.close_earlier_rows(&mut batch, &devices, deadline)
            .await?;
        // A claim lasts until the sends are over (the deadline, and what an attempt in flight
        // may take past it) and the log is written (one statement's time).
        let lasts = deadline.saturating_duration_since(Instant::now())
            + self.sink.overrun()
            + self.statement_timeout;
        let lapses_at = Instant::now() + lasts;
        let claim = Claim::at(self.now(), lasts);
        if let Err(e) = self.claim(&mut batch, &claim, deadline).await {
            // Nothing was sent: every claim of the batch goes back.
            self.release(&claim, None).await;
            return Err(e);
        }
        self.defer(&mut batch, deadline).await;
        let answers = self.send(&batch, deadline).await;
        batch.answered(answers);
        batch.classify(self.now());
        let pages = batch.page_messages();
        let settled = batch.settle();
        if let Err(e) = self.record_until(&settled, &claim, lapses_at).await {
            // What FCM accepted stays claimed until the claim lapses: a redelivery before then
            // does not send it again. The rest goes back for the redelivery to take at once.
            self.release(&claim, Some(&settled.unaccepted())).await;
            return Err(e);
        }
        let mut outcome = settled.outcome;
        self.record_pages_done(pages, &outcome, lapses_at).await?;
        self.expand_audiences(messages, expansions, (deadline, expiry), &mut outcome)
            .await;
        self.manage_topics(messages, changes, deadline, &mut outcome)
            .await?;
        Ok(outcome)
    }

    /// The batch's scheduled pushes that were cancelled: one query, asked only when the batch
    /// has scheduled pushes.
    async fn cancelled(
        &self,
        batch: &Batch<'_>,
        deadline: Instant,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let scheduled = batch.cancellable_push_ids();
        if scheduled.is_empty() {
            return Ok(Default::default());
        }
        self.timed(
            "finding cancelled pushes",
            Some(deadline),
            self.store.cancelled_among(&scheduled),
        )
        .await
    }

    /// What the Lambda and `pushq worker` do with a batch they received: delivers it in FIFO
    /// order ([`Engine::process_in_group_order`]); on a database error, logs it and hands every
    /// message back. Returns the messages to hand back, and the outcome for the caller to
    /// report ([`crate::metrics::report`]) when it is done with the batch (none when the batch
    /// failed).
    pub async fn deliver(
        &self,
        messages: &[QueueMessage],
        deadline: Instant,
    ) -> (Vec<String>, Option<BatchOutcome>) {
        match self.process_in_group_order(messages, deadline).await {
            Ok(outcome) => (outcome.failed_message_ids.clone(), Some(outcome)),
            Err(e) => {
                tracing::error!(error = %e, batch_size = messages.len(), "batch failed; every message will be redelivered");
                let all = messages.iter().map(|m| m.message_id.clone()).collect();
                (all, None)
            }
        }
    }

    /// Phase 4: one statement claims the batch's (push, target)s; one more, when its pushes have
    /// idempotency keys, their (key, target)s.
    async fn claim(
        &self,
        batch: &mut Batch<'_>,
        claim: &Claim,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let rows = batch.claims();
        if rows.is_empty() {
            return Ok(());
        }
        let claimed = self
            .timed(
                "claiming targets",
                Some(deadline),
                self.store.claim(&rows, claim),
            )
            .await?;
        batch.keep_claimed(&claimed);
        let keys = batch.key_claims();
        if !keys.is_empty() {
            let owners = self
                .timed(
                    "claiming idempotency keys",
                    Some(deadline),
                    self.store.claim_keys(&keys),
                )
                .await?;
            batch.keep_key_owners(&owners);
        }
        Ok(())
    }

    /// Phase 5: every claimed target to the sink, at most `send_concurrency` at once; each
    /// answer with its target's index.
    async fn send(&self, batch: &Batch<'_>, deadline: Instant) -> Vec<(usize, Attempted)> {
        let sink = self.sink.as_ref();
        // Each push's body is serialised once per kind of device, each send's spliced from it.
        let bodies: Vec<RequestBodies<'_>> = batch
            .pushes
            .iter()
            .map(|p| RequestBodies::new(&p.envelope.push, &p.envelope.id, p.envelope.dry_run))
            .collect();
        // By index: futures over borrowed targets must name one lifetime to stay `Send`.
        stream::iter(batch.to_send().collect::<Vec<_>>())
            .map(|n| {
                let target = &batch.targets[n];
                let envelope = &batch.pushes[target.push].envelope;
                // The request body is built as its send starts: at most `send_concurrency`
                // bodies exist at once, whatever the payload × targets.
                let body =
                    bodies[target.push].body(target.device.as_ref().map(|(kind, id)| match kind {
                        DeviceKind::Token => Recipient::Token(id),
                        DeviceKind::Fid => Recipient::Fid(id),
                    }));
                let send = sink.send(envelope.push.app(), body, deadline);
                async move { (n, send.await) }
            })
            .buffer_unordered(self.send_concurrency)
            .collect()
            .await
    }

    /// Phase 7, retried: the log write is repeated (never the sends) until it succeeds or the
    /// batch's claims lapse at `lapses_at`; no statement runs past the lapse, when another
    /// consumer may take the targets over.
    async fn record_until(
        &self,
        batch: &Settled,
        claim: &Claim,
        lapses_at: Instant,
    ) -> Result<(), StoreError> {
        let mut wait = WRITE_RETRY_FIRST_WAIT;
        loop {
            match self.record(batch, claim, lapses_at).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() + wait < lapses_at => {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64,
                        "writing the delivery log failed after the sends; the write (not the sends) is retried until the batch's claims lapse");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(WRITE_RETRY_MAX_WAIT);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Phase 7: the delivery rows first (once written, a later failure and the redelivery it
    /// causes do not send these targets again), then rejected messages, then dead tokens. Each
    /// statement gets the statement timeout, none runs past `lapses_at`.
    async fn record(
        &self,
        batch: &Settled,
        claim: &Claim,
        lapses_at: Instant,
    ) -> Result<(), StoreError> {
        if !batch.rows.is_empty() {
            // The store bounds each of its statements; this bounds the whole by the lapse.
            let limit = lapses_at.saturating_duration_since(Instant::now());
            let write = self
                .store
                .record_deliveries(&batch.rows, claim, self.statement_timeout);
            tokio::time::timeout(limit, write)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::TimedOut {
                        what: "writing the delivery log before the claims lapse",
                        limit_ms: limit.as_millis() as u64,
                    })
                })?;
        }
        if !batch.superseded.is_empty() {
            self.timed(
                "deleting superseded traces",
                Some(lapses_at),
                self.store.delete_superseded(&batch.superseded),
            )
            .await?;
        }
        if !batch.rejected.is_empty() {
            self.timed(
                "recording rejected messages",
                Some(lapses_at),
                self.store.record_rejected(&batch.rejected),
            )
            .await?;
        }
        if !batch.dead_tokens.is_empty() {
            self.timed(
                "invalidating dead tokens",
                Some(lapses_at),
                self.store.invalidate_devices(&batch.dead_tokens),
            )
            .await?;
        }
        Ok(())
    }

    /// Best effort, after a failure: gives the batch's claims back (`only` those targets, when
    /// some were sent). A database that just failed may fail this too; the claims then lapse
    /// at their time instead.
    async fn release(&self, claim: &Claim, only: Option<&[(&str, &str)]>) {
        match self
            .timed("releasing claims", None, self.store.release(claim, only))
            .await
        {
            // Each released target may have been sent: its redelivery may send it again.
            Ok(released) => tracing::warn!(
                released,
                "batch failed; the claims of targets FCM did not accept were released for the redelivery"
            ),
            Err(release) => {
                tracing::warn!(error = %release, "could not release the batch's claims; they lapse at the batch's deadline")
            }
        }
    }
}

/// The first pause before the log write is tried again; it doubles up to
/// [`WRITE_RETRY_MAX_WAIT`].
const WRITE_RETRY_FIRST_WAIT: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX_WAIT: Duration = Duration::from_secs(1);
