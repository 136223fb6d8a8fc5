//! `pushq worker`: long-polls SQS and runs the delivery engine with the Lambda event-source
//! semantics: partial batch failures stay for redelivery, visibility is extended while a batch
//! runs long, FIFO message groups keep their order, and SIGTERM lets the batches in flight finish.
//!
//! Every SQS answer is read: a failed receive is retried with backoff and never ends a poll loop,
//! delete entries SQS failed are retried and counted, and the poll loops are supervised together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use pushq_delivery::{Engine, QueueMessage};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Room a batching window must leave under the visibility timeout: the first visibility
/// extension goes out when the batch starts, at most the window after the first receive, and
/// must reach SQS before that receive's timeout runs out.
pub const WINDOW_MARGIN: Duration = Duration::from_secs(2);

/// Rounds of deleting the entries SQS failed on its side.
const DELETE_ROUNDS: u32 = 4;

/// Longest wait between receives that failed.
const MAX_RECEIVE_BACKOFF: Duration = Duration::from_secs(20);

/// Worker settings (the CLI flags).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The queue.
    pub queue_url: String,
    /// Messages per batch (above 10, several receives within the batching window).
    pub batch_size: usize,
    /// How long to gather a batch larger than 10.
    pub batching_window: Duration,
    /// Batches processed at once.
    pub concurrency: usize,
    /// Visibility timeout given to received messages, and the batch's time budget.
    pub visibility_timeout: Duration,
    /// CloudWatch namespace of the EMF metric lines.
    pub metrics_namespace: String,
}

impl WorkerConfig {
    /// Refuses settings under which messages could become visible again, and be taken by another
    /// consumer, before their batch even starts.
    pub fn check(&self) -> Result<(), String> {
        let (window, timeout) = (self.batching_window, self.visibility_timeout);
        if !window.is_zero() && window + WINDOW_MARGIN > timeout {
            return Err(format!(
                "--batching-window {}s could outlive --visibility-timeout {}s: the messages of a batch's first receive would become visible again, and be delivered twice, before their batch starts; keep the window at least {}s shorter than the visibility timeout",
                window.as_secs_f64(),
                timeout.as_secs(),
                WINDOW_MARGIN.as_secs()
            ));
        }
        Ok(())
    }

    fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }
}

/// Runs until `shutdown` turns true; the batches in flight then finish. The poll loops are
/// supervised together: one that panics is logged and started again, the others go on.
pub async fn run(
    config: WorkerConfig,
    engine: Arc<Engine>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let sqs = crate::sqs_client(&config.queue_url).await?;
    let config = Arc::new(config);
    let mut loops = JoinSet::new();
    let mut which = HashMap::new();
    let start = |loops: &mut JoinSet<()>, after: Duration| {
        let (sqs, engine, config, mut shutdown) = (
            sqs.clone(),
            engine.clone(),
            config.clone(),
            shutdown.clone(),
        );
        loops
            .spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(after) => {}
                    _ = shutdown.changed() => return,
                }
                poll_loop(&sqs, &engine, &config, shutdown).await
            })
            .id()
    };
    for n in 0..config.concurrency.max(1) {
        which.insert(start(&mut loops, Duration::ZERO), n);
    }
    while let Some(ended) = loops.join_next_with_id().await {
        let Err(e) = ended else {
            continue; // a loop ends by itself only at shutdown
        };
        let n = which.remove(&e.id()).unwrap_or_default();
        if *shutdown.borrow() {
            continue;
        }
        // Its batch's messages come back after their visibility timeout; the wait keeps a loop
        // that fails at once from spinning.
        tracing::error!(poll_loop = n, error = %e, "poll loop failed; starting it again in 1 s");
        which.insert(start(&mut loops, Duration::from_secs(1)), n);
    }
    Ok(())
}

async fn poll_loop(
    sqs: &aws_sdk_sqs::Client,
    engine: &Engine,
    config: &WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        // The FCM project's quota throttle: take no batch that would be handed back unsent.
        if let Some(until) = engine.throttled_until() {
            tracing::info!(
                wait_ms = until
                    .saturating_duration_since(std::time::Instant::now())
                    .as_millis() as u64,
                "FCM quota exhausted; receiving again when the throttle passes"
            );
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = shutdown.changed() => break,
            }
            continue;
        }
        let received = tokio::select! {
            received = receive_batch(sqs, config) => received,
            _ = shutdown.changed() => break,
        };
        let batch = match received {
            Ok(batch) => {
                failures = 0;
                batch
            }
            Err(e) => {
                failures += 1;
                let wait = receive_backoff(failures);
                tracing::warn!(
                    error = %e,
                    consecutive_failures = failures,
                    retry_in_ms = wait.as_millis() as u64,
                    "receive failed; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break,
                }
                continue;
            }
        };
        if batch.messages.is_empty() {
            continue;
        }
        process(sqs, engine, config, batch).await;
    }
}

/// Exponential backoff with jitter after `failures` failed receives in a row: about 1, 2, 4 s …
/// up to 20 s (the SDK has already retried each receive).
fn receive_backoff(failures: u32) -> Duration {
    let cap = Duration::from_secs(1 << failures.saturating_sub(1).min(5)).min(MAX_RECEIVE_BACKOFF);
    cap.mul_f64(0.5 + fastrand::f64() / 2.0)
}

struct Received {
    message: QueueMessage,
    receipt: String,
}

/// What a poll gathered, and when its first receive went out: the messages' visibility timeout
/// runs from then.
struct Batch {
    messages: Vec<Received>,
    first_receive: Instant,
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    config: &WorkerConfig,
    max: usize,
    wait: i32,
) -> Result<Vec<Received>, String> {
    let out = sqs
        .receive_message()
        .queue_url(&config.queue_url)
        .max_number_of_messages(max.clamp(1, 10) as i32)
        .wait_time_seconds(wait)
        .visibility_timeout(config.visibility_timeout.as_secs() as i32)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_attribute_names(pushq_delivery::FIRST_MESSAGE_ID)
        .send()
        .await
        .map_err(|e| format!("receive: {}", DisplayErrorContext(&e)))?;
    let fifo = config.is_fifo();
    Ok(out
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let attribute = |name| m.attributes().and_then(|a| a.get(&name)).cloned();
            let sent_timestamp = attribute(MessageSystemAttributeName::SentTimestamp);
            let receive_count = attribute(MessageSystemAttributeName::ApproximateReceiveCount);
            let first_message_id = m
                .message_attributes()
                .and_then(|a| a.get(pushq_delivery::FIRST_MESSAGE_ID))
                .and_then(|a| a.string_value().map(str::to_owned));
            // On a FIFO queue a message SQS gave no group shares one with its like.
            let group = fifo
                .then(|| attribute(MessageSystemAttributeName::MessageGroupId).unwrap_or_default());
            Received {
                message: QueueMessage::from_sqs(
                    m.message_id.as_deref(),
                    m.body.as_deref(),
                    sent_timestamp.as_deref(),
                )
                .delivered_before(receive_count.as_deref(), first_message_id.as_deref())
                .in_group(group.as_deref()),
                receipt: m.receipt_handle.unwrap_or_default(),
            }
        })
        .collect())
}

/// One long poll; with a batching window, further receives until the batch is full or the
/// window closes (as Lambda's event source mapping gathers batches, at any batch size). Only a
/// failure of the first receive is an error: a later one ends the gathering, and the batch
/// goes on with what it has.
async fn receive_batch(sqs: &aws_sdk_sqs::Client, config: &WorkerConfig) -> Result<Batch, String> {
    let first_receive = Instant::now();
    let mut messages = receive(sqs, config, config.batch_size, 20).await?;
    if messages.is_empty()
        || messages.len() >= config.batch_size
        || config.batching_window.is_zero()
    {
        return Ok(Batch {
            messages,
            first_receive,
        });
    }
    let window_closes = Instant::now() + config.batching_window;
    while messages.len() < config.batch_size {
        let left = window_closes.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // SQS waits whole seconds: a long poll for the whole seconds left, so the window is never
        // overrun; under a second, short polls take what is there until one comes back empty
        // (a 1 s window would otherwise never gather past the first receive).
        let wait = left.as_secs().min(20);
        match receive(sqs, config, config.batch_size - messages.len(), wait as i32).await {
            Ok(more) if wait == 0 && more.is_empty() => break,
            Ok(more) => messages.extend(more),
            Err(e) => {
                tracing::warn!(error = %e, batch_size = messages.len(), "receive failed while gathering a batch; the batch goes on with what it has");
                break;
            }
        }
    }
    Ok(Batch {
        messages,
        first_receive,
    })
}

async fn process(sqs: &aws_sdk_sqs::Client, engine: &Engine, config: &WorkerConfig, batch: Batch) {
    let started = Instant::now();
    let Batch {
        messages: batch,
        first_receive,
    } = batch;
    tracing::info!(batch_size = batch.len(), "batch received");
    // Retries stop after four fifths of the visibility timeout; an attempt in flight then may
    // finish (the engine is built with `cut_sends_at_deadline: false`): visibility is extended
    // while the batch runs.
    let deadline = started + config.visibility_timeout.mul_f64(0.8);
    let messages: Vec<QueueMessage> = batch.iter().map(|r| r.message.clone()).collect();
    let extender = extend_visibility(
        sqs.clone(),
        config.clone(),
        batch.iter().map(|r| r.receipt.clone()).collect(),
        first_receive,
    );
    let (failed, outcome) = engine.deliver(&messages, deadline).await;
    extender.abort();
    let Some(outcome) = outcome else {
        return;
    };
    let done: Vec<&str> = batch
        .iter()
        .filter(|r| !failed.contains(&r.message.message_id))
        .map(|r| r.receipt.as_str())
        .collect();
    let deleted = delete(sqs, config, &done).await;
    pushq_delivery::metrics::report(
        &outcome,
        started.elapsed(),
        &config.metrics_namespace,
        "pushq-worker",
        &[
            ("DeleteRetried", deleted.retried),
            ("NotDeleted", deleted.not_deleted),
        ],
    );
}

/// What deleting a batch's finished messages took.
#[derive(Debug, Default)]
struct Deleted {
    /// Delete entries sent again after SQS failed them (or their whole request).
    retried: u64,
    /// Finished messages still in the queue: they come back and the engine skips them.
    not_deleted: u64,
}

/// Deletes the messages whose receipt handles are `receipts`, ten per request, retrying the
/// entries SQS failed on its side (and whole requests that failed) with backoff. An entry SQS
/// failed on the caller's side (an expired receipt handle) is not retried.
async fn delete(sqs: &aws_sdk_sqs::Client, config: &WorkerConfig, receipts: &[&str]) -> Deleted {
    let mut deleted = Deleted::default();
    for chunk in receipts.chunks(10) {
        let mut pending: Vec<(usize, &str)> = chunk.iter().copied().enumerate().collect();
        let mut refused: Vec<String> = Vec::new();
        for round in 0..DELETE_ROUNDS {
            if round > 0 {
                deleted.retried += pending.len() as u64;
                let cap = 100u64 << (round - 1);
                tokio::time::sleep(Duration::from_millis(fastrand::u64(cap / 2..=cap))).await;
            }
            let entries = pending
                .iter()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*receipt)
                        .build()
                        .expect("id and handle")
                })
                .collect();
            let out = match sqs
                .delete_message_batch()
                .queue_url(&config.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(error = %DisplayErrorContext(&e), entries = pending.len(), "delete request failed; retrying");
                    continue;
                }
            };
            pending = to_delete_again(&out, &pending, &mut refused);
            if pending.is_empty() {
                break;
            }
        }
        let not_deleted = pending.len() + refused.len();
        if not_deleted > 0 {
            tracing::warn!(
                not_deleted,
                errors = %refused.join("; "),
                "finished messages could not be deleted; they will be redelivered and skipped"
            );
        }
        deleted.not_deleted += not_deleted as u64;
    }
    deleted
}

/// The entries of `pending` to delete again after SQS's answer `out`: those it failed on its
/// side and those it did not report on. Those it failed on the caller's side go to `refused`.
fn to_delete_again<'a>(
    out: &DeleteMessageBatchOutput,
    pending: &[(usize, &'a str)],
    refused: &mut Vec<String>,
) -> Vec<(usize, &'a str)> {
    let mut again = Vec::new();
    for failed in out.failed() {
        let Some(entry) = pending.iter().find(|(i, _)| i.to_string() == failed.id()) else {
            continue;
        };
        let why = format!(
            "{}{}",
            failed.code(),
            failed
                .message()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
        if failed.sender_fault() {
            refused.push(why);
        } else {
            tracing::warn!(error = %why, "delete entry failed on SQS's side; retrying");
            again.push(*entry);
        }
    }
    // An entry SQS neither deleted nor failed is tried again.
    let answered: Vec<&str> = out
        .successful()
        .iter()
        .map(|s| s.id())
        .chain(out.failed().iter().map(|f| f.id()))
        .collect();
    again.extend(
        pending
            .iter()
            .filter(|(i, _)| !answered.contains(&i.to_string().as_str())),
    );
    again
}

/// While a batch runs, pushes its messages' visibility out every half timeout, counted from
/// their receive: the first extension is due half a timeout after `first_receive` (at once if
/// gathering the batch took longer), each next one half a timeout after the previous went out.
fn extend_visibility(
    sqs: aws_sdk_sqs::Client,
    config: WorkerConfig,
    receipts: Vec<String>,
    first_receive: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = config.visibility_timeout / 2;
        let mut next = first_receive + every;
        loop {
            tokio::time::sleep_until(next.into()).await;
            next = Instant::now() + every;
            for chunk in receipts.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .visibility_timeout(config.visibility_timeout.as_secs() as i32)
                            .build()
                            .expect("id and handle")
                    })
                    .collect();
                match sqs
                    .change_message_visibility_batch()
                    .queue_url(&config.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) if out.failed().is_empty() => {}
                    Ok(out) => tracing::warn!(
                        failed = out.failed().len(),
                        error = %out.failed()[0].code(),
                        "visibility extension failed for some messages; they may be delivered again"
                    ),
                    Err(e) => tracing::warn!(
                        error = %DisplayErrorContext(&e),
                        "visibility extension failed; the batch's messages may be delivered again"
                    ),
                }
            }
        }
    })
}
