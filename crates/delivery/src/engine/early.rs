//! Scheduled pushes whose copy comes early: EventBridge Scheduler fires within its minute, so a
//! copy may reach a batch before its `sendAt`. It is held: the rest of the batch goes first, then
//! the batch waits for it and sends it when due, if that leaves time to send before the
//! deadline; else its message is handed back, to come again after the queue's visibility
//! timeout.

use std::time::{Duration, Instant};

use super::{Engine, QueueMessage};
use crate::outcome::BatchOutcome;
use crate::store::StoreError;

impl Engine {
    /// [`Engine::process`] for a batch holding early copies: `due[i]` is when `messages[i]` is
    /// due, if it came early.
    pub(super) async fn process_with_early_copies(
        &self,
        messages: &[QueueMessage],
        due: &[Option<i64>],
        deadline: Instant,
    ) -> Result<BatchOutcome, StoreError> {
        let now_ms = self.now().timestamp_millis();
        let now: Vec<QueueMessage> = messages
            .iter()
            .zip(due)
            .filter(|(_, at)| at.is_none())
            .map(|(m, _)| m.clone())
            .collect();
        let mut outcome = self.process_due(&now, deadline).await?;
        // Time kept for the sends after the wait: half of what is left, at most 10 s.
        let left = deadline.saturating_duration_since(Instant::now());
        let wait_until_ms = self.now().timestamp_millis()
            + left
                .saturating_sub((left / 2).min(HELD_SEND_TIME))
                .as_millis() as i64;
        let (mut waiting, mut too_early, mut latest) = (Vec::new(), Vec::new(), now_ms);
        for (m, at) in messages.iter().zip(due) {
            match *at {
                Some(at) if at <= wait_until_ms => {
                    latest = latest.max(at);
                    waiting.push(m.clone());
                }
                Some(_) => too_early.push(m.message_id.clone()),
                None => {}
            }
        }
        if !too_early.is_empty() {
            tracing::info!(
                handed_back = too_early.len(),
                "scheduled pushes arrived too early to wait for in this batch; handed back until the queue's visibility timeout"
            );
            outcome.counts.messages += too_early.len();
            outcome.counts.scheduled_early += too_early.len();
            outcome.failed_message_ids.extend(too_early);
        }
        if !waiting.is_empty() {
            let wait_ms = latest - self.now().timestamp_millis();
            if wait_ms > 0 {
                tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
            }
            outcome.absorb(self.process_due(&waiting, deadline).await?);
        }
        Ok(outcome)
    }
}

/// Most time a batch keeps for sending a scheduled push it waited for.
const HELD_SEND_TIME: Duration = Duration::from_secs(10);

/// When a message's scheduled push is due, if that is still ahead of `now_ms` (its copy came
/// early).
pub(super) fn due_at(m: &QueueMessage, now_ms: i64) -> Option<i64> {
    scheduled_after(&m.body, m.original_id(), m.sent_at_ms, now_ms)?
        .push
        .send_at_ms()
}

/// The envelope in `body` when its push is scheduled (`sendAt`) for after `now_ms`. Only a body
/// that mentions `sendAt` is parsed, so that the messages of unscheduled pushes cost a substring
/// search. Local mode holds its stored pushes by the same rule.
pub fn scheduled_after(
    body: &str,
    message_id: &str,
    sent_at_ms: i64,
    now_ms: i64,
) -> Option<pushq_model::Envelope> {
    if !body.contains("\"sendAt\"") {
        return None;
    }
    let envelope = pushq_model::Envelope::parse(body, message_id, sent_at_ms).ok()?;
    envelope
        .push
        .send_at_ms()
        .is_some_and(|at| at > now_ms)
        .then_some(envelope)
}
