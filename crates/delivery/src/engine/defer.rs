//! The recipient rules in the engine: reading what they need (phase 3c), and putting what they
//! deferred back on the queue (phase 4c): the push again, for the deferred users only, due at the
//! window's end, through the producer (an SQS delay, or an EventBridge Scheduler schedule beyond
//! 900 s; in local mode, local mode's own queue).

use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use pushq_model::Envelope;
use pushq_producer::{BoxFuture, Producer};

use super::batch::{Batch, Deferral};
use super::{Clock, Engine};
use crate::rules::RecipientRules;
use crate::store::StoreError;

/// The error code of deferred targets whose push could not be enqueued again (recorded
/// `retrying`; their message comes back and they are judged again).
pub const DEFER_FAILED: &str = "DEFER_FAILED";
/// The error code of deferred targets in a deployment with no queue to defer through
/// (`PUSHQ_QUEUE_URL` unset): recorded `retrying`, their message comes back.
pub const NO_DEFER_QUEUE: &str = "NO_DEFER_QUEUE";

/// Most time a batch waits for its deferrals to be enqueued; those unanswered come back
/// (`DEFER_FAILED`), and their redelivery finds the schedules that were made after all.
const DEFER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Enqueues a push again for some of its users, due later.
pub trait Deferrer: Send + Sync {
    /// `envelope`'s push again, for `users` only, due at `until_ms`; resolves once the queue
    /// (or the scheduler) has it. The error is one line, naming no secret.
    fn defer<'a>(
        &'a self,
        envelope: &'a Envelope,
        users: &'a [String],
        until_ms: i64,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Queue messages the consumer writes itself, now (an audience push's pages, and the push
    /// again to go on expanding it): (body, key unique within push `id`); resolves once the
    /// queue has them all. The error is one line, naming no secret.
    fn enqueue<'a>(
        &'a self,
        id: &'a str,
        messages: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

impl Deferrer for Producer {
    fn defer<'a>(
        &'a self,
        envelope: &'a Envelope,
        users: &'a [String],
        until_ms: i64,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let ticket =
                Producer::defer(self, envelope, users, until_ms).map_err(|e| e.to_string())?;
            ticket.accepted().await.map(drop).map_err(|e| e.to_string())
        })
    }

    fn enqueue<'a>(
        &'a self,
        id: &'a str,
        messages: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let ticket = self
                .enqueue_bodies(id, messages)
                .map_err(|e| e.to_string())?;
            ticket.accepted().await.map(drop).map_err(|e| e.to_string())
        })
    }
}

impl Engine {
    /// The same engine, with these recipient rules, deferring through `deferrer` (without one,
    /// what the rules defer comes back for redelivery, recorded `retrying` `NO_DEFER_QUEUE`).
    pub fn with_rules(self, rules: RecipientRules, deferrer: Option<Arc<dyn Deferrer>>) -> Engine {
        Engine {
            rules,
            deferrer,
            ..self
        }
    }

    /// The same engine, deferring through `deferrer`.
    pub fn with_deferrer(self, deferrer: Arc<dyn Deferrer>) -> Engine {
        Engine {
            deferrer: Some(deferrer),
            ..self
        }
    }

    /// The same engine, reading the time from `clock` (the recipient rules' windows, expiry
    /// and `sendAt`; claims keep the system clock).
    pub fn with_clock(self, clock: Clock) -> Engine {
        Engine { clock, ..self }
    }

    pub(super) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.clock)()
    }

    /// Phase 3c: one statement reads what the recipient rules need of the batch's users
    /// (preferences, opt-outs, the counts of the frequency caps), and each planned send to a
    /// user is kept, suppressed or deferred ([`Batch::apply_rules`]).
    pub(super) async fn apply_rules(
        &self,
        batch: &mut Batch<'_>,
        now: chrono::DateTime<chrono::Utc>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let users = batch.rule_users();
        let data = if users.is_empty() {
            Default::default()
        } else {
            let caps = self.rules.cap_counts(now);
            self.timed(
                "reading recipient rules",
                Some(deadline),
                self.store
                    .recipient_rules(&users, &caps, &batch.sendable_push_ids()),
            )
            .await?
        };
        batch.apply_rules(&self.rules, &data, now);
        Ok(())
    }

    /// Phase 4c: enqueues each deferral whose `deferred` rows this batch won, concurrently, by
    /// `deadline`; the targets of one that fails (or of every one, with no deferrer) come back.
    pub(super) async fn defer(&self, batch: &mut Batch<'_>, deadline: Instant) {
        let deferrals = batch.deferrals();
        if deferrals.is_empty() {
            return;
        }
        let Some(deferrer) = self.deferrer.clone() else {
            tracing::error!(
                targets = deferrals.iter().map(|d| d.targets.len()).sum::<usize>(),
                code = NO_DEFER_QUEUE,
                "recipient rules deferred targets, but this consumer has no queue to defer them through (set PUSHQ_QUEUE_URL); their messages will be redelivered"
            );
            for d in &deferrals {
                batch.defer_failed(&d.targets, NO_DEFER_QUEUE);
            }
            return;
        };
        // Deferring comes before the sends: it may take a quarter of what is left (at most
        // 10 s), so that a slow scheduler cannot take the rest of the batch's time.
        let left = (deadline.saturating_duration_since(Instant::now()) / 4).min(DEFER_WAIT);
        let calls = deferrals
            .iter()
            .map(|d| defer_one(deferrer.clone(), &batch.pushes[d.push].envelope, d));
        let answers = tokio::time::timeout(left, join_all(calls))
            .await
            .unwrap_or_else(|_| {
                vec![Err("no answer before the batch's deadline".into()); deferrals.len()]
            });
        for (d, answer) in deferrals.iter().zip(answers) {
            if let Err(error) = answer {
                let e = &batch.pushes[d.push].envelope;
                tracing::error!(push_id = %e.id, users = d.users.len(), until_ms = d.until_ms, %error, code = DEFER_FAILED,
                    "a deferred push could not be enqueued again; its message will be redelivered");
                batch.defer_failed(&d.targets, DEFER_FAILED);
            }
        }
    }
}

async fn defer_one(
    deferrer: Arc<dyn Deferrer>,
    envelope: &Envelope,
    d: &Deferral,
) -> Result<(), String> {
    deferrer.defer(envelope, &d.users, d.until_ms).await
}
