//! FIFO queues: the messages of one message group are delivered in the order SQS gave them, and
//! after a failure the group's later messages in the batch are handed back unsent.
//!
//! AWS's guidance for partial batch responses on FIFO queues is to stop at the first failure and
//! report it with everything after it; per message group is enough, since SQS orders within a
//! group only (Powertools' `SqsFifoPartialProcessor` with `skip_group_on_error` does the same).
//! The engine sends a batch's messages concurrently, so a batch holding two messages of one group
//! goes through it in rounds: the first message of every group, then the second of every group
//! whose first was done, and so on. A batch with one message per group (and every batch from a
//! standard queue) is one round, one [`Engine::process`]; each further round costs the engine's
//! statements once more, and each round gets an equal share of the batch's time left.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use super::{Engine, QueueMessage};
use crate::outcome::BatchOutcome;
use crate::store::StoreError;

impl Engine {
    /// Delivers one batch keeping FIFO order: messages of one group
    /// ([`QueueMessage::group`]) are processed one round after another, in batch order; once
    /// one of them is handed back, the group's later messages are handed back too, unsent. The
    /// outcome covers the whole batch. A database error fails the whole batch, as
    /// [`Engine::process`] does (rounds already recorded are skipped when it comes back).
    pub async fn process_in_group_order(
        &self,
        messages: &[QueueMessage],
        deadline: Instant,
    ) -> Result<BatchOutcome, StoreError> {
        let groups: Vec<Option<&str>> = messages.iter().map(|m| m.group.as_deref()).collect();
        let mut queues = group_queues(&groups);
        if queues.iter().all(|q| q.len() <= 1) {
            return self.process(messages, deadline).await;
        }
        let mut total = BatchOutcome::default();
        let mut held_back: Vec<usize> = Vec::new();
        loop {
            // Each round gets an equal share of the time left, so that a group whose message
            // retries to the deadline does not use up the time of other groups' later rounds.
            let rounds_left = queues.iter().map(VecDeque::len).max().unwrap_or(0) as u32;
            let now = Instant::now();
            let round_deadline = now + deadline.saturating_duration_since(now) / rounds_left.max(1);
            let round: Vec<(usize, usize)> = queues
                .iter_mut()
                .enumerate()
                .filter_map(|(q, queue)| Some((q, queue.pop_front()?)))
                .collect();
            if round.is_empty() {
                break;
            }
            let batch: Vec<QueueMessage> =
                round.iter().map(|&(_, m)| messages[m].clone()).collect();
            let outcome = self.process(&batch, round_deadline).await?;
            let failed: HashSet<&str> = outcome
                .failed_message_ids
                .iter()
                .map(String::as_str)
                .collect();
            for &(q, m) in &round {
                if failed.contains(messages[m].message_id.as_str()) {
                    held_back.extend(queues[q].drain(..));
                }
            }
            total.absorb(outcome);
        }
        hand_back_in_batch_order(&mut total, messages, &held_back);
        Ok(total)
    }
}

/// Adds the `held_back` messages (later messages of a group that failed) to the outcome's
/// failures, and puts the failures in batch order, as SQS gave them.
fn hand_back_in_batch_order(
    total: &mut BatchOutcome,
    messages: &[QueueMessage],
    held_back: &[usize],
) {
    if !held_back.is_empty() {
        tracing::info!(
            held_back = held_back.len(),
            "handed back unsent: later messages of a FIFO message group that failed"
        );
    }
    total
        .failed_message_ids
        .extend(held_back.iter().map(|&m| messages[m].message_id.clone()));
    let position: HashMap<&str, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.message_id.as_str(), i))
        .collect();
    total
        .failed_message_ids
        .sort_by_key(|id| position.get(id.as_str()).copied().unwrap_or(usize::MAX));
    total.counts.messages = messages.len();
}

/// The batch's message indices, one queue per message group in order of first appearance; a
/// message without a group is a queue of its own.
fn group_queues(groups: &[Option<&str>]) -> Vec<VecDeque<usize>> {
    let mut queues: Vec<VecDeque<usize>> = Vec::new();
    let mut by_group: HashMap<&str, usize> = HashMap::new();
    for (i, group) in groups.iter().enumerate() {
        let q = match group {
            Some(g) => *by_group.entry(*g).or_insert_with(|| {
                queues.push(VecDeque::new());
                queues.len() - 1
            }),
            None => {
                queues.push(VecDeque::new());
                queues.len() - 1
            }
        };
        queues[q].push_back(i);
    }
    queues
}

#[cfg(test)]
mod tests {
    use super::group_queues;

    #[test]
    fn groups_keep_batch_order_and_ungrouped_messages_stand_alone() {
        let queues = group_queues(&[Some("a"), None, Some("b"), Some("a"), None, Some("a")]);
        let queues: Vec<Vec<usize>> = queues.into_iter().map(Vec::from).collect();
        assert_eq!(queues, vec![vec![0, 3, 5], vec![1], vec![2], vec![4]]);
    }
}
