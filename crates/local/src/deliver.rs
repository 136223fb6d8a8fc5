//! Local mode's delivery attempts: stored messages are tried a few times, with a line per push
//! after each attempt; what becomes final is forgotten, what does not stays stored.

use std::time::{Duration, Instant};

use pushq_delivery::engine::{scheduled_after, Engine, QueueMessage};
use pushq_delivery::store::{DeliveryStatus, LocalMessage};
use pushq_delivery::BatchOutcome;

use crate::{LocalDelivery, Verbosity};

/// Times a batch is tried before local mode gives up on what still fails transiently.
const ATTEMPTS: u32 = 5;
/// How long one attempt retries transient FCM answers (as a Lambda invocation would): with the
/// pauses between attempts, local mode gives up on a push within about 20 s, saying why at each
/// attempt.
const ATTEMPT_TIME: Duration = Duration::from_secs(3);

impl LocalDelivery {
    /// Delivers stored messages, retrying transient failures a few times; what becomes final is
    /// forgotten, what does not stays stored (with why) for `flush()` or the next process.
    /// Messages not due yet (`sendAt`) wait for their time ([`LocalDelivery::deliver_when_due`]).
    pub(crate) async fn deliver(&self, engine: &Engine, todo: Vec<LocalMessage>) {
        let todo = self.due_now(todo);
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
                    let (waiting, why) = self.settle(engine, batch, &outcome).await;
                    batch = waiting;
                    if batch.is_empty() {
                        return;
                    }
                    last_error = why;
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

    /// Sets aside the messages not due yet (`sendAt`), delivered when due; returns the others.
    fn due_now(&self, todo: Vec<LocalMessage>) -> Vec<LocalMessage> {
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
        due
    }

    /// After an attempt: prints what each push got, forgets the messages now final, and returns
    /// those still waiting with why they are not final.
    async fn settle(
        &self,
        engine: &Engine,
        batch: Vec<QueueMessage>,
        outcome: &BatchOutcome,
    ) -> (Vec<QueueMessage>, String) {
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
        let why = format!(
            "{} target(s) not final ({})",
            outcome.counts.transient + outcome.counts.no_credentials,
            if codes.is_empty() {
                "FCM or the network".to_owned()
            } else {
                codes.join(", ")
            }
        );
        (waiting, why)
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
