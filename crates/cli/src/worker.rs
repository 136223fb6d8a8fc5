//! `pushq worker`: long-polls SQS and runs the delivery engine with the Lambda event-source
//! semantics: partial batch failures stay for redelivery, visibility is extended while a batch
//! runs long, and SIGTERM lets the in-flight batch finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use pushq_delivery::{Engine, QueueMessage};
use tokio::sync::watch;

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

/// Runs until `shutdown` turns true; the batches in flight then finish.
pub async fn run(
    config: WorkerConfig,
    engine: Arc<Engine>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let sqs = crate::sqs_client().await?;
    let config = Arc::new(config);
    let mut loops = Vec::new();
    for _ in 0..config.concurrency.max(1) {
        let (sqs, engine, config, shutdown) = (
            sqs.clone(),
            engine.clone(),
            config.clone(),
            shutdown.clone(),
        );
        loops.push(tokio::spawn(async move {
            poll_loop(&sqs, &engine, &config, shutdown).await
        }));
    }
    for l in loops {
        l.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn poll_loop(
    sqs: &aws_sdk_sqs::Client,
    engine: &Engine,
    config: &WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    while !*shutdown.borrow() {
        let batch = tokio::select! {
            batch = receive_batch(sqs, config) => batch?,
            _ = shutdown.changed() => break,
        };
        if batch.is_empty() {
            continue;
        }
        process(sqs, engine, config, batch).await;
    }
    Ok(())
}

struct Received {
    message: QueueMessage,
    receipt: String,
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
        .send()
        .await
        .map_err(|e| format!("receive: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
    Ok(out
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let sent_timestamp = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .map(String::as_str);
            Received {
                message: QueueMessage::from_sqs(
                    m.message_id.as_deref(),
                    m.body.as_deref(),
                    sent_timestamp,
                ),
                receipt: m.receipt_handle.unwrap_or_default(),
            }
        })
        .collect())
}

/// One long poll; with a batching window, further receives until the batch is full or the
/// window closes (as Lambda's event source mapping gathers batches, at any batch size).
async fn receive_batch(
    sqs: &aws_sdk_sqs::Client,
    config: &WorkerConfig,
) -> Result<Vec<Received>, String> {
    let mut batch = receive(sqs, config, config.batch_size, 20).await?;
    if batch.is_empty() || batch.len() >= config.batch_size || config.batching_window.is_zero() {
        return Ok(batch);
    }
    let window_closes = Instant::now() + config.batching_window;
    while batch.len() < config.batch_size {
        let left = window_closes.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let more = receive(
            sqs,
            config,
            config.batch_size - batch.len(),
            left.as_secs().min(20) as i32,
        )
        .await?;
        batch.extend(more);
    }
    Ok(batch)
}

async fn process(
    sqs: &aws_sdk_sqs::Client,
    engine: &Engine,
    config: &WorkerConfig,
    batch: Vec<Received>,
) {
    let started = Instant::now();
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
    );
    let outcome = engine.process(&messages, deadline).await;
    extender.abort();
    let failed: Vec<String> = match &outcome {
        Ok(o) => o.failed_message_ids.clone(),
        Err(e) => {
            tracing::error!(error = %e, batch_size = messages.len(), "batch failed; every message will be redelivered");
            return;
        }
    };
    let done: Vec<&Received> = batch
        .iter()
        .filter(|r| !failed.contains(&r.message.message_id))
        .collect();
    for chunk in done.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&r.receipt)
                    .build()
                    .expect("id and handle")
            })
            .collect();
        if let Err(e) = sqs
            .delete_message_batch()
            .queue_url(&config.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed; those messages will be redelivered and skipped");
        }
    }
    if let Ok(o) = outcome {
        let elapsed = started.elapsed();
        o.log(elapsed);
        pushq_delivery::metrics::print_emf(&o, elapsed, &config.metrics_namespace, "pushq-worker");
    }
}

/// While a batch runs, pushes its messages' visibility out every half timeout.
fn extend_visibility(
    sqs: aws_sdk_sqs::Client,
    config: WorkerConfig,
    receipts: Vec<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = config.visibility_timeout / 2;
        loop {
            tokio::time::sleep(every).await;
            for chunk in receipts.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .visibility_timeout(config.visibility_timeout.as_secs() as i32)
                            .build()
                            .expect("id and handle")
                    })
                    .collect();
                let _ = sqs
                    .change_message_visibility_batch()
                    .queue_url(&config.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
            }
        }
    })
}
